"""v-prediction and zero-terminal-SNR checkpoints (NoobAI-XL, Illustrious v-pred), and CFG rescale.

Detected from the file (``v_pred`` / ``ztsnr`` marker keys, modelspec metadata),
sampled as A1111 samples them (CompVisVDenoiser over alphas_cumprod rescaled to
zero terminal SNR, last value clamped as A1111 does), recorded in infotext.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from kdiffusion_reference import TOLERANCE, ldm_alphas_cumprod, make_engine, mean_difference, reference_image, \
    request_for
from webui.infotext import parse_infotext
from tests.random_checkpoint import write_random_checkpoint


def with_markers(path, *keys):
    """Add the empty marker tensors v-pred / ztsnr checkpoints carry."""
    state = load_file(path)
    state.update({key: torch.tensor([]) for key in keys})
    save_file(state, path)
    return path


def zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """A1111's rescale: sqrt(alpha-bar) shifted to end at 0 and scaled to keep its start; last value 4.897e-08."""
    root = alphas_cumprod.sqrt()
    start, end = root[0].item(), root[-1].item()
    rescaled = ((root - end) * start / (start - end)) ** 2
    rescaled[-1] = 4.8973451890853435e-08
    return rescaled


@pytest.fixture(scope="module")
def vpred_engine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vpred-file")
    path = write_random_checkpoint(folder / "tiny-vpred.safetensors", "sd1", seed=5,
                                   metadata={"modelspec.prediction_type": "v"})
    engine = make_engine(tmp_path_factory.mktemp("vpred"), path)
    engine.test_size = 32
    return engine


@pytest.fixture(scope="module")
def ztsnr_engine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ztsnr-file")
    path = with_markers(write_random_checkpoint(folder / "tiny-ztsnr.safetensors", "sd1", seed=6), "v_pred", "ztsnr")
    engine = make_engine(tmp_path_factory.mktemp("ztsnr"), path)
    engine.test_size = 32
    return engine


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DPM++ 2M SDE", "Heun"])
def test_v_prediction_matches_a1111(vpred_engine, sampler):
    request = request_for(vpred_engine, sampler)
    ours = vpred_engine.generate(request).images[0]
    assert vpred_engine.models.ensure(None).scheduler_config["prediction_type"] == "v_prediction"
    expected = reference_image(vpred_engine, request, prediction="v_prediction")
    assert mean_difference(ours, expected) < TOLERANCE
    as_eps = reference_image(vpred_engine, request, prediction="epsilon")
    assert mean_difference(ours, as_eps) > 1.0  # sampling it as an eps model would be visibly wrong


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M"])
def test_zero_terminal_snr_v_prediction_matches_a1111(ztsnr_engine, sampler):
    request = request_for(ztsnr_engine, sampler)
    result = ztsnr_engine.generate(request)
    config = ztsnr_engine.models.ensure(None).scheduler_config
    assert config["prediction_type"] == "v_prediction" and config["rescale_betas_zero_snr"] is True
    expected = reference_image(ztsnr_engine, request, zero_terminal_snr(ldm_alphas_cumprod()), "v_prediction")
    assert mean_difference(result.images[0], expected) < TOLERANCE
    fields = parse_infotext(result.infotexts[0])
    assert fields["Noise Schedule"] == "Zero Terminal SNR"


def test_sdxl_markers_are_detected_and_sampled(tmp_path, tiny_checkpoint_dir):
    path = tmp_path / "noob-like.safetensors"
    path.write_bytes((tiny_checkpoint_dir / "tiny-sdxl.safetensors").read_bytes())
    engine = make_engine(tmp_path / "root", with_markers(path, "v_pred", "ztsnr"))
    result = engine.generate(request_for(engine, "Euler a"))
    config = engine.models.ensure(None).scheduler_config
    assert config["prediction_type"] == "v_prediction" and config["rescale_betas_zero_snr"] is True
    fields = parse_infotext(result.infotexts[0])
    assert fields["Noise Schedule"] == "Zero Terminal SNR" and fields["Prediction"] == "v-prediction"


def test_cfg_rescale_phi_matches_the_formula_and_is_recorded(vpred_engine):
    request = request_for(vpred_engine, "Euler")
    request.sampler_overrides = {"cfg_rescale_phi": 0.7}
    result = vpred_engine.generate(request)
    assert parse_infotext(result.infotexts[0])["CFG Rescale phi"] == "0.7"
    expected = reference_image(vpred_engine, request, prediction="v_prediction", rescale_phi=0.7)
    assert mean_difference(result.images[0], expected) < TOLERANCE
    plain = reference_image(vpred_engine, request, prediction="v_prediction")
    assert mean_difference(result.images[0], plain) > TOLERANCE
