"""k-diffusion's samplers (Karras et al. 2022, DPM-Solver, DPM-Solver++...) over a denoiser.

Every sampler has the same signature ``sample(model, x, sigmas, run)``:
``model(x, sigma)`` returns the denoised latents for a scalar sigma tensor,
``run`` carries the settings (eta, churn, s_noise...), the noise source and the
per-step callback. The arithmetic follows k-diffusion 0.1.1 step for step so
that a seed gives A1111's image.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from webui.engine.sampling.schedules import karras


@dataclass
class SamplerRun:
    """Settings and services of one sampling run."""

    noise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (sigma, sigma_next) -> noise like x
    callback: Callable[[int, torch.Tensor], None] = lambda i, denoised: None
    eta: float = 1.0
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = float("inf")
    s_noise: float = 1.0
    solver_type: str = "midpoint"  # DPM++ 2M SDE: midpoint or heun
    # DPM fast / adaptive integrate between two sigmas with a number of model evaluations
    sigma_min: float | None = None
    sigma_max: float | None = None
    n: int | None = None


def to_d(x, sigma, denoised):
    """The Karras ODE derivative dx/dsigma."""
    return (x - denoised) / sigma


def ancestral_step(sigma_from, sigma_to, eta=1.0):
    """(sigma_down, sigma_up): the deterministic target and the noise to add in an ancestral step."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = torch.minimum(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    return (sigma_to ** 2 - sigma_up ** 2) ** 0.5, sigma_up


def _t(sigma):
    return sigma.log().neg()


def _sigma(t):
    return t.neg().exp()


def _churned_step(model, x, sigmas, i, run: SamplerRun):
    """Karras' stochastic churn (noise up to sigma_hat), then the model: (x, sigma_hat, derivative)."""
    sigma = sigmas[i]
    gamma = min(run.s_churn / (len(sigmas) - 1), 2 ** 0.5 - 1) if run.s_tmin <= sigma <= run.s_tmax else 0.0
    sigma_hat = sigma * (gamma + 1)
    if gamma > 0:
        x = x + run.noise(sigma, sigma) * run.s_noise * (sigma_hat ** 2 - sigma ** 2) ** 0.5
    denoised = model(x, sigma_hat)
    run.callback(i, denoised)
    return x, sigma_hat, to_d(x, sigma_hat, denoised)


def euler(model, x, sigmas, run: SamplerRun):
    for i in range(len(sigmas) - 1):
        x, sigma_hat, d = _churned_step(model, x, sigmas, i, run)
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x


def euler_ancestral(model, x, sigmas, run: SamplerRun):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        down, up = ancestral_step(sigmas[i], sigmas[i + 1], run.eta)
        run.callback(i, denoised)
        x = x + to_d(x, sigmas[i], denoised) * (down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + run.noise(sigmas[i], sigmas[i + 1]) * run.s_noise * up
    return x


def heun(model, x, sigmas, run: SamplerRun):
    for i in range(len(sigmas) - 1):
        x, sigma_hat, d = _churned_step(model, x, sigmas, i, run)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1]))
            x = x + (d + d_2) / 2 * dt
    return x


def dpm_2(model, x, sigmas, run: SamplerRun):
    for i in range(len(sigmas) - 1):
        x, sigma_hat, d = _churned_step(model, x, sigmas, i, run)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigma_hat)
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid))
            x = x + d_2 * (sigmas[i + 1] - sigma_hat)
    return x


def dpm_2_ancestral(model, x, sigmas, run: SamplerRun):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        down, up = ancestral_step(sigmas[i], sigmas[i + 1], run.eta)
        run.callback(i, denoised)
        d = to_d(x, sigmas[i], denoised)
        if down == 0:
            x = x + d * (down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(down.log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid))
            x = x + d_2 * (down - sigmas[i])
            x = x + run.noise(sigmas[i], sigmas[i + 1]) * run.s_noise * up
    return x


def lms_coefficient(order: int, t, i: int, j: int) -> float:
    """Integral over [t_i, t_i+1] of the Lagrange basis polynomial j of the last ``order`` points."""
    from scipy import integrate

    def basis(tau):
        prod = 1.0
        for k in range(order):
            if j != k:
                prod *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return prod

    return integrate.quad(basis, t[i], t[i + 1], epsrel=1e-4)[0]


def lms(model, x, sigmas, run: SamplerRun, order: int = 4):
    points = sigmas.detach().cpu().numpy()
    ds = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        run.callback(i, denoised)
        current = min(i + 1, order)
        coeffs = [lms_coefficient(current, points, i, j) for j in range(current)]
        x = x + sum(c * d for c, d in zip(coeffs, reversed(ds)))
    return x


def dpmpp_2s_ancestral(model, x, sigmas, run: SamplerRun):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        down, up = ancestral_step(sigmas[i], sigmas[i + 1], run.eta)
        run.callback(i, denoised)
        if down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (down - sigmas[i])
        else:
            t, t_next = _t(sigmas[i]), _t(down)
            h = t_next - t
            s = t + 0.5 * h
            x_2 = (_sigma(s) / _sigma(t)) * x - (-h * 0.5).expm1() * denoised
            denoised_2 = model(x_2, _sigma(s))
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + run.noise(sigmas[i], sigmas[i + 1]) * run.s_noise * up
    return x


def dpmpp_sde(model, x, sigmas, run: SamplerRun, r: float = 0.5):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        run.callback(i, denoised)
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        down, up = ancestral_step(_sigma(t), _sigma(s), run.eta)
        s_ = _t(down)
        x_2 = (_sigma(s_) / _sigma(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + run.noise(_sigma(t), _sigma(s)) * run.s_noise * up
        denoised_2 = model(x_2, _sigma(s))
        down, up = ancestral_step(_sigma(t), _sigma(t_next), run.eta)
        t_next_ = _t(down)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (_sigma(t_next_) / _sigma(t)) * x - (t - t_next_).expm1() * denoised_d
        x = x + run.noise(_sigma(t), _sigma(t_next)) * run.s_noise * up
    return x


def dpmpp_2m(model, x, sigmas, run: SamplerRun):
    old = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        run.callback(i, denoised)
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        if old is None or sigmas[i + 1] == 0:
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - _t(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_d
        old = denoised
    return x


def dpmpp_2m_sde(model, x, sigmas, run: SamplerRun):
    old, h_last = None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        run.callback(i, denoised)
        h = None
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            eta_h = run.eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old is not None:
                r = h_last / h
                if run.solver_type == "heun":
                    x = x + ((-h - eta_h).expm1().neg() / (-h - eta_h) + 1) * (1 / r) * (denoised - old)
                else:
                    x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - old)
            if run.eta:
                x = x + run.noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * eta_h).expm1().neg().sqrt() \
                    * run.s_noise
        old, h_last = denoised, h
    return x


def dpmpp_3m_sde(model, x, sigmas, run: SamplerRun):
    d_1 = d_2 = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        run.callback(i, denoised)
        h = None
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            h_eta = h * (run.eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0, d1_1 = (denoised - d_1) / r0, (d_1 - d_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * (denoised - d_1) / (h_1 / h)
            if run.eta:
                x = x + run.noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h * run.eta).expm1().neg().sqrt() \
                    * run.s_noise
        d_1, d_2 = denoised, d_1
        h_1, h_2 = h, h_1
    return x


def restart(model, x, sigmas, run: SamplerRun):
    """Restart sampling (Xu et al. 2023) as A1111 runs it: Heun steps, plus back-jumps near sigma 0.1 from 20 steps on."""
    steps = len(sigmas) - 1
    restarts: dict[float, list] = {}
    if steps >= 20:
        restart_steps, restart_times = (steps // 4, 2) if steps >= 36 else (9, 1)
        sigmas = karras(steps - restart_steps * restart_times, sigmas[-2].item(), sigmas[0].item())
        restarts = {0.1: [restart_steps + 1, restart_times, 2]}
    by_index = {int(torch.argmin(abs(sigmas - key), dim=0)): value for key, value in restarts.items()}
    pairs = []
    for i in range(len(sigmas) - 1):
        pairs.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in by_index:
            n_steps, times, restart_max = by_index[i + 1]
            min_idx, max_idx = i + 1, int(torch.argmin(abs(sigmas - restart_max), dim=0))
            if max_idx < min_idx:
                back = karras(n_steps, sigmas[min_idx].item(), sigmas[max_idx].item())[:-1]
                pairs.extend(list(zip(back[:-1], back[1:])) * times)
    step = 0
    last = None
    for old, new in pairs:
        if last is None:
            last = old
        elif last < old:
            x = x + run.noise(old, new) * run.s_noise * (old ** 2 - last ** 2) ** 0.5
        denoised = model(x, old)
        d = to_d(x, old, denoised)
        run.callback(step, denoised)
        dt = new - old
        if new == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, new, model(x_2, new))
            x = x + (d + d_2) / 2 * dt
        step += 1
        last = new
    return x


def lcm(model, x, sigmas, run: SamplerRun):
    """Latent Consistency Model sampling: jump to the prediction, re-noise to the next sigma."""
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        run.callback(i, denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * run.noise(sigmas[i], sigmas[i + 1])
    return x


# ---------------------------------------------------------------- DPM-Solver (fast and adaptive)
class _DPMSolver:
    """DPM-Solver in t = -log(sigma) (Lu et al. 2022), with the eps form of the model."""

    def __init__(self, model, callback):
        self.model, self.callback = model, callback

    def eps(self, cache, key, x, t):
        if key not in cache:
            cache[key] = (x - self.model(x, _sigma(t))) / _sigma(t)
        return cache[key]

    def step_1(self, x, t, t_next, cache):
        h = t_next - t
        return x - _sigma(t_next) * h.expm1() * self.eps(cache, "eps", x, t)

    def step_2(self, x, t, t_next, cache, r1=1 / 2):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - _sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        return x - _sigma(t_next) * h.expm1() * eps - _sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)

    def step_3(self, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - _sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        u2 = x - _sigma(s2) * (r2 * h).expm1() * eps - _sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) \
            * (eps_r1 - eps)
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return x - _sigma(t_next) * h.expm1() * eps - _sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)

    def _ancestral(self, t, t_next, t_end, eta):
        if not eta:
            return t_next, 0.0
        down, _ = ancestral_step(_sigma(t), _sigma(t_next), eta)
        target = torch.minimum(t_end, _t(down))
        return target, (_sigma(t_next) ** 2 - _sigma(target) ** 2) ** 0.5


def dpm_fast(model, x, sigmas, run: SamplerRun):
    solver = _DPMSolver(model, run.callback)
    nfe = run.n
    t_start, t_end = _t(torch.tensor(run.sigma_max)), _t(torch.tensor(run.sigma_min))
    m = math.floor(nfe / 3) + 1
    ts = torch.linspace(t_start, t_end, m + 1, device=x.device)
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    for i, order in enumerate(orders):
        cache: dict = {}
        t, t_next = ts[i], ts[i + 1]
        target, up = solver._ancestral(t, t_next, t_end, run.eta)
        eps = solver.eps(cache, "eps", x, t)
        run.callback(i, x - _sigma(t) * eps)
        step = {1: solver.step_1, 2: solver.step_2, 3: solver.step_3}[order]
        x = step(x, t, target, cache)
        x = x + up * run.s_noise * run.noise(_sigma(t), _sigma(t_next))
    return x


def dpm_adaptive(model, x, sigmas, run: SamplerRun, order=3, rtol=0.05, atol=0.0078, h_init=0.05,
                 pcoeff=0.0, icoeff=1.0, dcoeff=0.0, accept_safety=0.81):
    solver = _DPMSolver(model, run.callback)
    t_start, t_end = _t(torch.tensor(run.sigma_max)), _t(torch.tensor(run.sigma_min))
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    pid = _PID(h_init, pcoeff, icoeff, dcoeff, 1.5 if run.eta else order, accept_safety)
    s, x_prev, steps = t_start, x, 0
    while s < t_end - 1e-5:
        cache: dict = {}
        t = torch.minimum(t_end, s + pid.h)
        target, up = solver._ancestral(s, t, t_end, run.eta)
        eps = solver.eps(cache, "eps", x, s)
        denoised = x - _sigma(s) * eps
        if order == 2:
            x_low = solver.step_1(x, s, target, cache)
            x_high = solver.step_2(x, s, target, cache)
        else:
            x_low = solver.step_2(x, s, target, cache, r1=1 / 3)
            x_high = solver.step_3(x, s, target, cache)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        if pid.propose_step(error):
            x_prev = x_low
            x = x_high + up * run.s_noise * run.noise(_sigma(s), _sigma(t))
            s = t
        run.callback(steps, denoised)
        steps += 1
    return x


class _PID:
    """PID step-size controller of DPM-Solver's adaptive mode."""

    def __init__(self, h, pcoeff, icoeff, dcoeff, order, accept_safety, eps=1e-8):
        self.h = h
        self.b1, self.b2, self.b3 = (pcoeff + icoeff + dcoeff) / order, -(pcoeff + 2 * dcoeff) / order, dcoeff / order
        self.accept_safety, self.eps, self.errs = accept_safety, eps, []

    def propose_step(self, error) -> bool:
        inv = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv, inv, inv]
        self.errs[0] = inv
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept


# ---------------------------------------------------------------- Brownian-tree noise (SDE samplers)
class BrownianNoise:
    """Noise from one torchsde Brownian tree per image, seeded with the image's seed (as A1111 does).

    A batch therefore gives each image the same noise as a run of that image alone.
    """

    def __init__(self, x: torch.Tensor, sigma_min, sigma_max, seeds: list[int]):
        import torchsde

        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        self._sign = 1 if t0 < t1 else -1
        t0, t1 = (t0, t1) if t0 < t1 else (t1, t0)
        w0 = torch.zeros_like(x)[0]
        self._trees = [torchsde.BrownianTree(t0, w0, t1, entropy=int(s)) for s in seeds]

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        sign = 1 if t0 < t1 else -1
        lo, hi = (t0, t1) if t0 < t1 else (t1, t0)
        with warnings.catch_warnings():  # float32 sigmas sit a rounding error outside the tree's float64 ends
            warnings.filterwarnings("ignore", message="Should have", category=UserWarning)
            w = torch.stack([tree(lo, hi) for tree in self._trees]) * (self._sign * sign)
        return w / (t1 - t0).abs().sqrt()
