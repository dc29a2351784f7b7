"""A1111's vocabulary is one table: what the API advertises and the UI offers is what the engine runs."""
from types import SimpleNamespace

import pytest

from test_api_support import world  # noqa: F401  (fixture)
from webui import vocabulary
from webui.engine.sampling import ksamplers, schedules, timesteps
from webui.schemas import GenerationRequest, InvalidRequest
from webui.ui import common


def test_every_advertised_sampler_alias_names_a_sampler_the_engine_can_run(world):
    listed = world.client.get("/sdapi/v1/samplers").json()
    assert any("k_lcm" in item["aliases"] for item in listed)
    for item in listed:
        for name in (item["name"], *item["aliases"]):
            spec, schedule, warnings = vocabulary.resolve(name, "Automatic")
            assert (spec.name, warnings) == (item["name"], []), name
            algorithms = timesteps if spec.kind == "timesteps" else ksamplers
            assert callable(getattr(algorithms, spec.function, None)), (name, spec.function)
    for item in world.client.get("/sdapi/v1/schedulers").json():
        found = vocabulary.find_schedule(item["name"])
        assert found is not None and found.label == item["label"]
        assert found.function is None or callable(getattr(schedules, found.function, None)), item


def test_the_ui_offers_the_same_names_and_codes_the_request_accepts():
    bare = SimpleNamespace(engine=None, upscalers=None)
    assert common.sampler_names(bare) == vocabulary.sampler_names()
    assert common.scheduler_names(bare) == vocabulary.schedule_labels()
    assert common.upscaler_names(bare) == list(vocabulary.BUILTIN_UPSCALERS)
    latent = list(vocabulary.LATENT_UPSCALE_MODES)
    assert common.hr_upscaler_names(bare)[:len(latent)] == latent
    # Radio buttons send their index: every index is a code the request model takes, and no more.
    for choices, field in ((common.RESIZE_MODES, "resize_mode"), (common.MASKED_CONTENT, "inpainting_fill"),
                           (common.MASK_MODES, "inpainting_mask_invert")):
        for index in range(len(choices)):
            assert getattr(GenerationRequest(**{field: index}), field) == index
        with pytest.raises(InvalidRequest):
            GenerationRequest(**{field: len(choices)})
