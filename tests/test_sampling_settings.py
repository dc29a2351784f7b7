"""A1111's sampler settings: options, override_settings and request fields, their infotext, and reading it back."""
from __future__ import annotations

import pytest

from kdiffusion_reference import make_engine, mean_difference, request_for
from webui.infotext import infotext_to_request_fields, parse_infotext
from webui.options import Options


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_checkpoint_dir):
    engine = make_engine(tmp_path_factory.mktemp("settings"), tiny_checkpoint_dir / "tiny-sd1.safetensors")
    engine.options = Options()
    engine.test_size = 32
    return engine


def generate(engine, sampler, steps=6, **fields):
    request = request_for(engine, sampler, steps=steps)
    for key, value in fields.items():
        setattr(request, key, value)
    result = engine.generate(request)
    return result.images[0], parse_infotext(result.infotexts[0])


def test_euler_a_with_eta_zero_is_euler(engine):
    euler, _ = generate(engine, "Euler")
    ancestral, fields = generate(engine, "Euler a", eta=0.0)
    default, default_fields = generate(engine, "Euler a")
    assert mean_difference(euler, ancestral) < 0.01
    assert mean_difference(euler, default) > 1.0
    assert float(fields["Eta"]) == 0.0 and "Eta" not in default_fields  # A1111 writes Eta only when it is not 1


def test_request_field_beats_override_beats_option(engine):
    engine.options.update({"eta_ancestral": 0.0})
    try:
        from_option, fields = generate(engine, "Euler a")
        assert float(fields["Eta"]) == 0.0
        _, fields = generate(engine, "Euler a", sampler_overrides={"eta_ancestral": 0.5})
        assert float(fields["Eta"]) == 0.5
        _, fields = generate(engine, "Euler a", eta=0.25, sampler_overrides={"eta_ancestral": 0.5})
        assert float(fields["Eta"]) == 0.25
    finally:
        engine.options.update({"eta_ancestral": 1.0})
    euler, _ = generate(engine, "Euler")
    assert mean_difference(euler, from_option) < 0.01


def test_schedule_settings_are_applied_and_recorded(engine):
    plain, plain_fields = generate(engine, "DPM++ 2M")
    assert plain_fields["Schedule type"] == "Karras"
    changed, fields = generate(engine, "DPM++ 2M", sampler_overrides={
        "always_discard_next_to_last_sigma": True, "sgm_noise_multiplier": True, "rho": 5.0, "sigma_max": 10.0})
    assert fields["Discard penultimate sigma"] == "True" and fields["SGM noise multiplier"] == "True"
    assert float(fields["Schedule rho"]) == 5.0 and float(fields["Schedule max sigma"]) == 10.0
    assert mean_difference(plain, changed) > 0.1
    back = infotext_to_request_fields(fields)
    assert back["sampler_overrides"] == {"always_discard_next_to_last_sigma": True, "sgm_noise_multiplier": True,
                                         "rho": 5.0, "sigma_max": 10.0}


def test_churn_and_ngms(engine):
    plain, _ = generate(engine, "Euler")
    churned, fields = generate(engine, "Euler", s_churn=1.0, s_noise=1.0)
    assert float(fields["Sigma churn"]) == 1.0 and "Sigma noise" not in fields
    assert mean_difference(plain, churned) > 0.1
    skipped, fields = generate(engine, "Euler", s_min_uncond=100.0)
    assert float(fields["NGMS"]) == 100.0
    assert mean_difference(plain, skipped) > 0.1


def test_options_list_a1111_sampler_keys():
    values = Options().as_dict()
    for key, default in (("eta_ancestral", 1.0), ("eta_ddim", 0.0), ("s_churn", 0.0), ("s_noise", 1.0),
                         ("sigma_min", 0.0), ("rho", 0.0), ("always_discard_next_to_last_sigma", False),
                         ("sgm_noise_multiplier", False), ("uni_pc_variant", "bh1"), ("beta_dist_alpha", 0.6)):
        assert values[key] == default


def test_bad_setting_is_a_clear_error(engine):
    from webui.schemas import InvalidRequest

    with pytest.raises(InvalidRequest) as err:
        generate(engine, "Euler", sampler_overrides={"s_churn": "lots"})
    assert "s_churn" in str(err.value) or "lots" in str(err.value)
