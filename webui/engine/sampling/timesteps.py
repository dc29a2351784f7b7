"""A1111's "timesteps" samplers: DDIM, DDIM CFG++, PLMS, UniPC (and our DDPM) on integer training steps.

These work on the model's own (variance-preserving) latents and its noise
prediction: ``model(x, t)`` returns the guided eps for timestep t, and after
each call ``model.last_uncond`` holds the unguided (negative prompt) eps that
CFG++ needs. Timesteps are A1111's: 1, 1 + 1000 // steps, ... clipped to 999.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from webui.engine.sampling.ksamplers import SamplerRun


def timestep_grid(steps: int, train_steps: int = 1000) -> torch.Tensor:
    """A1111's timesteps for a run of ``steps``: 1, 1 + T // steps, ... (int64, ascending)."""
    return torch.clip(torch.arange(0, train_steps, max(train_steps // steps, 1)) + 1, 0, train_steps - 1)


def _alphas(alphas_cumprod, timesteps):
    alphas = alphas_cumprod[timesteps]
    prev = alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    return alphas, prev


def _ddim_sigmas(alphas, prev, eta):
    return eta * torch.sqrt((1 - prev) / (1 - alphas.double()) * (1 - alphas.double() / prev))


def ddim(model, x, timesteps, alphas_cumprod, run: SamplerRun, cfgpp: bool = False):
    """DDIM (Song et al. 2020); with ``cfgpp`` the direction term uses the unguided eps (CFG++, Chung et al. 2024)."""
    alphas, prev = _alphas(alphas_cumprod, timesteps)
    sigmas = _ddim_sigmas(alphas, prev, run.eta)
    root_one_minus = torch.sqrt(1 - alphas)
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = model(x, int(timesteps[index]))
        a_t, a_prev = alphas[index].item(), prev[index].item()
        sigma_t = sigmas[index].item()
        pred_x0 = (x - root_one_minus[index].item() * e_t) / a_t ** 0.5
        direction = model.last_uncond if cfgpp else e_t
        dir_xt = (1.0 - a_prev - sigma_t ** 2) ** 0.5 * direction
        noise = sigma_t * run.noise(None, None) if sigma_t or not cfgpp else 0.0
        x = a_prev ** 0.5 * pred_x0 + dir_xt + noise
        run.callback(i, pred_x0)
    return x


def plms(model, x, timesteps, alphas_cumprod, run: SamplerRun):
    """PLMS (Liu et al. 2022): pseudo linear multistep, up to 4th-order Adams-Bashforth on eps."""
    alphas, prev = _alphas(alphas_cumprod, timesteps)
    root_one_minus = torch.sqrt(1 - alphas)

    def step(x, e_t, index):
        a_t, a_prev = alphas[index].item(), prev[index].item()
        pred_x0 = (x - root_one_minus[index].item() * e_t) / a_t ** 0.5
        return a_prev ** 0.5 * pred_x0 + (1.0 - a_prev) ** 0.5 * e_t, pred_x0

    old = []
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = model(x, int(timesteps[index]))
        if not old:
            x_prev, _ = step(x, e_t, index)
            e_next = model(x_prev, int(timesteps[max(index - 1, 0)]))
            e_prime = (e_t + e_next) / 2
        elif len(old) == 1:
            e_prime = (3 * e_t - old[-1]) / 2
        elif len(old) == 2:
            e_prime = (23 * e_t - 16 * old[-1] + 5 * old[-2]) / 12
        else:
            e_prime = (55 * e_t - 59 * old[-1] + 37 * old[-2] - 9 * old[-3]) / 24
        x, pred_x0 = step(x, e_prime, index)
        old.append(e_t)
        if len(old) >= 4:
            old.pop(0)
        run.callback(i, pred_x0)
    return x


# ---------------------------------------------------------------- UniPC (Zhao et al. 2023)
@dataclass
class UniPCSettings:
    """A1111's options uni_pc_variant, uni_pc_skip_type, uni_pc_order, uni_pc_lower_order_final."""

    variant: str = "bh1"
    skip_type: str = "time_uniform"
    order: int = 3
    lower_order_final: bool = True


class _VPSchedule:
    """The discrete VP schedule in continuous time t in (0, 1], piecewise linear in log alpha."""

    def __init__(self, alphas_cumprod):
        self.log_alpha = (0.5 * torch.log(alphas_cumprod)).reshape(-1)
        self.total_n = self.log_alpha.shape[0]
        self.t_array = torch.linspace(0.0, 1.0, self.total_n + 1)[1:]

    def log_mean(self, t):
        return _interp(t, self.t_array, self.log_alpha)

    def std(self, t):
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_mean(t)))

    def lam(self, t):
        log_mean = self.log_mean(t)
        return log_mean - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_mean))

    def t_of_lambda(self, lam):
        log_alpha = -0.5 * torch.logaddexp(torch.zeros((1,)), -2.0 * lam)
        return _interp(log_alpha, torch.flip(self.log_alpha, [0]), torch.flip(self.t_array, [0]))


def _interp(x, xp, yp):
    """Piecewise-linear interpolation of x over the points (xp, yp), extrapolating at the ends (UniPC's interpolate_fn)."""
    x = x.reshape(-1)
    n = xp.shape[0]
    all_x = torch.cat([x[:, None], xp[None, :].expand(x.shape[0], n)], dim=1)
    sorted_x, order = torch.sort(all_x, dim=1)
    idx = torch.argmin(order, dim=1)
    start = torch.where(idx == 0, torch.tensor(1), torch.where(idx == n, torch.tensor(n - 2), idx - 1))
    end = torch.where(torch.eq(start, idx - 1), start + 2, start + 1)
    start_x = torch.gather(sorted_x, 1, start[:, None]).squeeze(1)
    end_x = torch.gather(sorted_x, 1, end[:, None]).squeeze(1)
    start_i2 = torch.where(idx == 0, torch.tensor(0), torch.where(idx == n, torch.tensor(n - 2), idx - 1))
    y = yp[None, :].expand(x.shape[0], n)
    start_y = torch.gather(y, 1, start_i2[:, None]).squeeze(1)
    end_y = torch.gather(y, 1, (start_i2 + 1)[:, None]).squeeze(1)
    return start_y + (x - start_x) * (end_y - start_y) / (end_x - start_x)


def unipc(model, x, timesteps, alphas_cumprod, run: SamplerRun, settings: UniPCSettings | None = None,
          is_img2img: bool = False):
    """UniPC multistep with data prediction (bh1/bh2 variants), as A1111 runs it."""
    settings = settings or UniPCSettings()
    ns = _VPSchedule(alphas_cumprod.to(torch.float32))
    steps = len(timesteps)
    t_end = 1.0 / ns.total_n
    t_start = float(timesteps[-1]) / 1000 + 1 / 1000 if is_img2img else 1.0
    if settings.skip_type == "logSNR":
        lams = torch.linspace(float(ns.lam(torch.tensor([t_start]))), float(ns.lam(torch.tensor([t_end]))), steps + 1)
        grid = ns.t_of_lambda(lams)
    elif settings.skip_type == "time_quadratic":
        grid = torch.linspace(t_start ** 0.5, t_end ** 0.5, steps + 1).pow(2)
    else:
        grid = torch.linspace(t_start, t_end, steps + 1)
    order = min(settings.order, steps)
    counter = [0]

    def data_pred(x, t):
        eps = model(x, (float(t) - 1.0 / ns.total_n) * 1000.0)
        t1 = t.reshape(1)
        return (x - float(ns.std(t1)) * eps) / float(torch.exp(ns.log_mean(t1)))

    def after(x, model_x):
        run.callback(counter[0], model_x if model_x is not None else x)
        counter[0] += 1

    model_prev, t_prev = [data_pred(x, grid[0])], [grid[0]]
    for init_order in range(1, order):
        t = grid[init_order]
        x, model_x = _unipc_update(ns, data_pred, x, model_prev, t_prev, t, init_order, True, settings.variant)
        if model_x is None:
            model_x = data_pred(x, t)
        after(x, model_x)
        model_prev.append(model_x)
        t_prev.append(t)
    for step in range(order, steps + 1):
        t = grid[step]
        step_order = min(order, steps + 1 - step) if settings.lower_order_final else order
        x, model_x = _unipc_update(ns, data_pred, x, model_prev, t_prev, t, step_order, step != steps,
                                   settings.variant)
        after(x, model_x)
        model_prev, t_prev = model_prev[1:] + [model_prev[-1]], t_prev[1:] + [t]
        if step < steps:
            model_prev[-1] = model_x if model_x is not None else data_pred(x, t)
    return x


def _unipc_update(ns: _VPSchedule, data_pred, x, model_prev, t_prev, t, order, use_corrector, variant):
    t1 = t.reshape(1)
    lambda_0, lambda_t = ns.lam(t_prev[-1].reshape(1)), ns.lam(t1)
    model_0 = model_prev[-1]
    sigma_0, sigma_t = ns.std(t_prev[-1].reshape(1)), ns.std(t1)
    alpha_t = torch.exp(ns.log_mean(t1))
    h = lambda_t - lambda_0
    rks, d1s = [], []
    for i in range(1, order):
        rk = ((ns.lam(t_prev[-(i + 1)].reshape(1)) - lambda_0) / h)[0]
        rks.append(rk)
        d1s.append((model_prev[-(i + 1)] - model_0) / rk)
    rks.append(1.0)
    rks = torch.tensor(rks)
    hh = -h[0]
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    factorial = 1
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    rows, b = [], []
    for i in range(1, order + 1):
        rows.append(torch.pow(rks, i - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    r_mat = torch.stack(rows)
    b = torch.tensor(b)
    stacked = torch.stack(d1s, dim=1) if d1s else None
    # The coefficients are computed on the CPU; as plain numbers they work with latents on any device.
    x_t_ = float(sigma_t / sigma_0) * x - float(alpha_t * h_phi_1) * model_0
    step = float(alpha_t * b_h)
    if stacked is not None:
        rhos_p = torch.tensor([0.5]) if order == 2 else torch.linalg.solve(r_mat[:-1, :-1], b[:-1])
        pred_res = torch.einsum("k,bkchw->bchw", rhos_p.to(stacked), stacked)
    else:
        pred_res = 0
    x_t = x_t_ - step * pred_res
    model_t = None
    if use_corrector:
        rhos_c = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(r_mat, b)
        model_t = data_pred(x_t, t)
        corr_res = torch.einsum("k,bkchw->bchw", rhos_c[:-1].to(stacked), stacked) if stacked is not None else 0
        x_t = x_t_ - step * (corr_res + float(rhos_c[-1]) * (model_t - model_0))
    return x_t, model_t
