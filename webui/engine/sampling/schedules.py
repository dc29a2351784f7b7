"""A1111's schedule types: n sigmas from sigma_max down to sigma_min, then 0.

``webui.vocabulary.SCHEDULES`` names them (A1111's API names, labels, aliases); the
functions here compute them, each ``f(n, sigma_min, sigma_max, ctx)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from webui.engine.sampling.denoiser import DiscreteSchedule, append_zero


@dataclass(frozen=True)
class ScheduleContext:
    """What a schedule function may use besides n, sigma_min and sigma_max."""

    model: DiscreteSchedule
    is_sdxl: bool = False
    rho: float | None = None  # None: the schedule's default
    beta_alpha: float = 0.6
    beta_beta: float = 0.6


def karras(n, sigma_min, sigma_max, ctx: ScheduleContext | None = None):
    rho = (ctx.rho if ctx is not None else None) or 7.0
    ramp = torch.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return append_zero((hi + ramp * (lo - hi)) ** rho)


def exponential(n, sigma_min, sigma_max, ctx: ScheduleContext):
    return append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp())


def polyexponential(n, sigma_min, sigma_max, ctx: ScheduleContext):
    rho = ctx.rho or 1.0
    ramp = torch.linspace(1, 0, n) ** rho
    return append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def uniform(n, sigma_min, sigma_max, ctx: ScheduleContext):
    return ctx.model.uniform_sigmas(n)


def _in_t(n, sigma_min, sigma_max, ctx: ScheduleContext, include_end: bool):
    start = ctx.model.sigma_to_t(torch.tensor(sigma_max))
    end = ctx.model.sigma_to_t(torch.tensor(sigma_min))
    ts = torch.linspace(start, end, n) if include_end else torch.linspace(start, end, n + 1)[:-1]
    return torch.FloatTensor([float(ctx.model.t_to_sigma(t)) for t in ts] + [0.0])


def sgm_uniform(n, sigma_min, sigma_max, ctx: ScheduleContext):
    return _in_t(n, sigma_min, sigma_max, ctx, include_end=False)


def normal(n, sigma_min, sigma_max, ctx: ScheduleContext):
    return _in_t(n, sigma_min, sigma_max, ctx, include_end=True)


def kl_optimal(n, sigma_min, sigma_max, ctx: ScheduleContext):
    a_min, a_max = torch.arctan(torch.tensor(sigma_min)), torch.arctan(torch.tensor(sigma_max))
    i = torch.arange(n + 1)
    return torch.tan(i / n * a_min + (1.0 - i / n) * a_max)


# Align Your Steps 10-step sigmas published by NVIDIA (as A1111 ships them).
AYS_SD1 = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
AYS_SDXL = [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029]


def align_your_steps(n, sigma_min, sigma_max, ctx: ScheduleContext):
    table = AYS_SDXL if ctx.is_sdxl else AYS_SD1
    if n == len(table):
        return torch.FloatTensor(table + [0.0])
    # log-linear interpolation of the reversed table onto n points
    xs, ys = np.linspace(0, 1, len(table)), np.log(table[::-1])
    sig = np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1].copy()
    return torch.FloatTensor(np.append(sig, [0.0]))


def simple(n, sigma_min, sigma_max, ctx: ScheduleContext):
    sigmas = ctx.model.sigmas
    stride = len(sigmas) / n
    return torch.FloatTensor([float(sigmas[-(1 + int(x * stride))]) for x in range(n)] + [0.0])


def ddim(n, sigma_min, sigma_max, ctx: ScheduleContext):
    sigmas = ctx.model.sigmas
    stride = max(len(sigmas) // n, 1)
    picked = [float(sigmas[x]) for x in range(1, len(sigmas), stride)]
    return torch.FloatTensor(picked[::-1] + [0.0])


def beta(n, sigma_min, sigma_max, ctx: ScheduleContext):
    """"Beta Sampling is All You Need" (Lee et al. 2024): sigmas at beta-distribution quantiles."""
    from scipy import stats

    quantiles = [stats.beta.ppf(x, ctx.beta_alpha, ctx.beta_beta) for x in 1 - np.linspace(0, 1, n)]
    return torch.FloatTensor([sigma_min + q * (sigma_max - sigma_min) for q in quantiles] + [0.0])
