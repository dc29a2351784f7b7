"""The model's discrete noise schedule as k-diffusion's CompVis denoisers see it.

Sigmas come from ``alphas_cumprod`` registered as the LDM code does (betas
linear in sqrt, computed in float64, stored as float32); a continuous timestep
comes from a sigma by interpolating log-sigmas. Zero-terminal-SNR models
rescale ``alphas_cumprod`` as A1111 does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# A1111's value for the last alpha-bar of a zero-terminal-SNR schedule (keeps sigma finite).
ZTSNR_LAST_ALPHA_BAR = 4.8973451890853435e-08


def alphas_cumprod_from_config(config: dict) -> torch.Tensor:
    """alphas_cumprod [T] in float32 from a diffusers-style scheduler config."""
    steps = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    kind = config.get("beta_schedule", "scaled_linear")
    if kind == "linear":
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
    else:  # scaled_linear: the LDM "linear" schedule, linear in sqrt(beta)
        betas = torch.linspace(math.sqrt(start), math.sqrt(end), steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alpha-bar) so the last step is pure noise (Lin et al. 2023), as A1111 does."""
    root = alphas_cumprod.sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    result = root ** 2
    result[-1] = ZTSNR_LAST_ALPHA_BAR
    return result


@dataclass
class DiscreteSchedule:
    """sigma <-> t over a model's training steps (k-diffusion's DiscreteSchedule, quantize off)."""

    alphas_cumprod: torch.Tensor  # [T] float32, on CPU

    def __post_init__(self):
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Continuous timestep of each sigma by linear interpolation of log-sigma."""
        log_sigma = sigma.log()
        log_sigmas = self.log_sigmas.to(sigma.device)
        dists = log_sigma - log_sigmas[:, None]
        low = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=log_sigmas.shape[0] - 2)
        high = low + 1
        lo, hi = log_sigmas[low], log_sigmas[high]
        w = ((lo - log_sigma) / (lo - hi)).clamp(0, 1)
        return ((1 - w) * low + w * high).view(sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = t.float()
        log_sigmas = self.log_sigmas.to(t.device)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()

    def uniform_sigmas(self, n: int) -> torch.Tensor:
        """n sigmas evenly spaced in t from the last training step to the first, then 0 (k-diffusion's default)."""
        t = torch.linspace(len(self.sigmas) - 1, 0, n)
        return append_zero(self.t_to_sigma(t))


class LCMSchedule(DiscreteSchedule):
    """A1111's LCM denoiser schedule: 50 of the 1000 training steps, timesteps quantised to them."""

    ORIGINAL_STEPS = 50

    def __init__(self, alphas_cumprod: torch.Tensor):
        total = len(alphas_cumprod)
        self.skip = total // self.ORIGINAL_STEPS
        picked = torch.zeros(self.ORIGINAL_STEPS, dtype=torch.float32)
        for x in range(self.ORIGINAL_STEPS):
            picked[self.ORIGINAL_STEPS - 1 - x] = alphas_cumprod[total - 1 - x * self.skip]
        super().__init__(picked)

    def uniform(self, n: int) -> torch.Tensor:
        start, end = self.sigma_to_t(self.sigma_max), self.sigma_to_t(self.sigma_min)
        return append_zero(self.t_to_sigma(torch.linspace(start, end, n)))

    def sigma_to_t(self, sigma):
        dists = sigma.log() - self.log_sigmas.to(sigma.device)[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape) * self.skip + (self.skip - 1)

    def t_to_sigma(self, t):
        t = torch.clamp(((t - (self.skip - 1)) / self.skip).float(), min=0, max=len(self.sigmas) - 1)
        return super().t_to_sigma(t)


def append_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros([1])])


def scalings(sigma: torch.Tensor, prediction: str):
    """(c_skip, c_out, c_in) of the CompVis eps / v denoisers (sigma_data = 1)."""
    c_in = 1 / (sigma ** 2 + 1) ** 0.5
    if prediction == "v_prediction":
        return 1 / (sigma ** 2 + 1), -sigma / (sigma ** 2 + 1) ** 0.5, c_in
    return torch.ones_like(sigma), -sigma, c_in
