"""Dynamic thresholding's arithmetic (sd-dynamic-thresholding's definitions) on random latents."""
import math

import pytest
import torch

from webui.addons import find_addon
from webui.addons.specs import DYNTHRES_MODES
from webui.engine.guidance.dynthres import DynThresh, scheduled


def settings(**values) -> DynThresh:
    return DynThresh(find_addon("dynamic_thresholding").from_named({"enabled": True, **values}, "dt"))


def latents(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g) * 0.3


@pytest.mark.parametrize("startpoint", ["MEAN", "ZERO"])
@pytest.mark.parametrize("measure", ["AD", "STD"])
@pytest.mark.parametrize("separate", [True, False])
def test_mimicking_the_real_scale_is_plain_cfg_in_every_variant(startpoint, measure, separate):
    uncond, pulls = latents()
    dt = settings(mimic_scale=12.0, scaling_startpoint=startpoint, variability_measure=measure,
                  separate_feature_channels=separate)
    assert torch.allclose(dt.combine(uncond, pulls, 12.0, 0, 10), uncond + 12.0 * pulls, atol=1e-5)


def test_the_result_has_the_mimic_scales_spread_and_the_cfg_scales_mean():
    uncond, pulls = latents(1)
    result = settings(mimic_scale=3.0).combine(uncond, pulls, 30.0, 0, 10)
    mimic, cfg = uncond + 3.0 * pulls, uncond + 30.0 * pulls
    spread = lambda x: (x - x.mean(dim=(2, 3), keepdim=True)).abs().amax(dim=(2, 3))  # noqa: E731
    assert torch.allclose(spread(result), spread(mimic), atol=1e-5)
    assert torch.allclose(result.mean(dim=(2, 3)), cfg.mean(dim=(2, 3)), atol=1e-5)
    half = settings(mimic_scale=3.0, interpolate_phi=0.5).combine(uncond, pulls, 30.0, 0, 10)
    assert torch.allclose(half, 0.5 * result + 0.5 * cfg, atol=1e-5)


def test_a_lower_percentile_clamps_outliers_instead_of_shrinking_everything_to_fit_them():
    uncond, pulls = latents(2)
    pulls[0, 0, 0, 0] = 20.0  # one wild value
    full = settings(mimic_scale=7.0).combine(uncond, pulls, 30.0, 0, 10)
    clamped = settings(mimic_scale=7.0, threshold_percentile=95.0).combine(uncond, pulls, 30.0, 0, 10)

    def spread_of_the_rest(x):
        return (x[0, 0] - x[0, 0].mean()).abs().flatten()[1:].max()

    assert spread_of_the_rest(clamped) > 1.5 * spread_of_the_rest(full)


def test_schedules_run_between_their_minimum_and_the_value():
    assert scheduled(10, "Constant", 2, 0.7, 4) == 10
    assert scheduled(10, "Linear Down", 2, 0.0, 4) == 10 and scheduled(10, "Linear Down", 2, 1.0, 4) == 2
    assert scheduled(10, "Linear Up", 2, 0.0, 4) == 2 and scheduled(10, "Linear Up", 2, 1.0, 4) == 10
    assert scheduled(10, "Power Up", 0, 0.5, 2) == pytest.approx(2.5)
    assert scheduled(10, "Power Down", 0, 0.5, 2) == pytest.approx(7.5)
    assert scheduled(10, "Cosine Down", 0, 1.0, 4) == pytest.approx(10 * math.cos(1.5707))
    assert scheduled(10, "Sawtooth", 0, 0.5, 3) == pytest.approx(5.0)  # 1.5 cycles in
    assert scheduled(10, "Linear Repeating", 0, 0.5, 1) == pytest.approx(0.0)  # the triangle's bottom
    for mode in DYNTHRES_MODES:
        for frac in (0.0, 0.3, 1.0):
            assert 2 - 1e-9 <= scheduled(10, mode, 2, frac, 4) <= 10 + 1e-9
