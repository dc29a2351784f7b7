"""One request model with one set of limits: a value past a limit is refused where the request is made
(an API 422 naming the field, an InvalidRequest for the UI), never in the worker after taking a queue slot."""
import math

import pytest
from PIL import Image

from test_api_support import world  # noqa: F401  (fixture)
from webui.schemas import (
    MAX_BATCH_SIZE, MAX_EXTRAS_IMAGES, MAX_N_ITER, MAX_PROMPT_CHARS, MAX_SIDE, MAX_STEPS, ExtrasRequest,
    GenerationRequest, InvalidRequest, check_request_limits,
)

# (field, a value just past its limit, the value at the limit)
LIMITS = [
    ("steps", MAX_STEPS + 1, MAX_STEPS),
    ("steps", 0, 1),
    ("hr_second_pass_steps", MAX_STEPS + 1, MAX_STEPS),
    ("batch_size", MAX_BATCH_SIZE + 1, 2),
    ("n_iter", MAX_N_ITER + 1, MAX_N_ITER),
    ("width", MAX_SIDE + 8, MAX_SIDE),
    ("height", 8, 16),
    ("cfg_scale", 100.5, 100),
    ("subseed_strength", 1.01, 1),
    ("hr_scale", 8.5, 8),
    ("hr_resize_x", MAX_SIDE + 1, MAX_SIDE),
    ("prompt", "x" * (MAX_PROMPT_CHARS + 1), "x" * MAX_PROMPT_CHARS),
]


def test_every_limit_is_the_same_for_the_api_and_the_request_the_ui_builds(world):
    for field, past, at in LIMITS:
        response = world.client.post("/sdapi/v1/txt2img", json={field: past, "width": 64, "height": 64}
                                     if field not in ("width", "height") else {field: past})
        assert response.status_code == 422, (field, past, response.text[:300])
        assert response.json()["field"] == field
        with pytest.raises(InvalidRequest) as refused:
            GenerationRequest(**{field: past})
        assert refused.value.field == field and field in str(refused.value)
        assert getattr(GenerationRequest(**{field: at}), field) == at
    assert world.engine.requests == []  # nothing was queued, nothing reached the worker


def test_a_past_limit_request_through_the_native_job_api_is_refused_at_submission(world):
    response = world.client.post("/api/v1/jobs", json={"kind": "txt2img", "request": {"steps": 500}})
    assert response.status_code == 422 and response.json()["field"] == "steps"
    assert world.services.queue.list() == [] and world.engine.requests == []


def test_a_request_changed_after_it_was_made_is_checked_again_by_the_queue(world):
    request = GenerationRequest(prompt="fine", steps=20)
    request.steps = 500
    with pytest.raises(InvalidRequest, match="steps"):
        check_request_limits(request)
    with pytest.raises(InvalidRequest, match="steps"):
        world.services.queue.submit("txt2img", request)
    assert world.services.queue.list() == []


def test_numbers_json_cannot_carry_and_broken_text_are_refused():
    for field, value in (("cfg_scale", math.nan), ("denoising_strength", math.inf), ("eta", -math.inf)):
        with pytest.raises(InvalidRequest) as refused:
            GenerationRequest(**{field: value})
        assert refused.value.field == field
    with pytest.raises(InvalidRequest) as refused:
        GenerationRequest(negative_prompt="bad \ud800 surrogate")
    assert refused.value.field == "negative_prompt"
    with pytest.raises(InvalidRequest) as refused:
        GenerationRequest(styles=["ok", "y" * (MAX_PROMPT_CHARS + 1)])
    assert refused.value.field == "styles"


def test_whole_job_limits_and_field_combinations():
    with pytest.raises(InvalidRequest) as refused:
        GenerationRequest(width=4096, height=4096, batch_size=8)
    assert refused.value.field == "batch_size" and "pixels per batch" in str(refused.value)
    with pytest.raises(InvalidRequest) as refused:  # hires fix counts at its final size
        GenerationRequest(width=4096, height=4096, enable_hr=True, hr_scale=2, batch_size=2)
    assert refused.value.field == "batch_size"
    with pytest.raises(InvalidRequest, match="init image"):
        GenerationRequest(mask=Image.new("L", (8, 8)))
    with pytest.raises(InvalidRequest) as refused:
        GenerationRequest(randn_source="GPU2")
    assert refused.value.field == "randn_source"
    with pytest.raises(InvalidRequest) as refused:  # a misspelt field is an error, not silently ignored
        GenerationRequest(stepz=30)
    assert refused.value.field == "stepz"


def test_extras_limits_and_stored_requests():
    image = Image.new("RGB", (4, 4))
    with pytest.raises(InvalidRequest) as refused:
        ExtrasRequest(images=[image] * (MAX_EXTRAS_IMAGES + 1))
    assert refused.value.field == "images"
    for field, value in (("upscaling_resize", 0), ("gfpgan_visibility", 1.5), ("resize_mode", 2)):
        with pytest.raises(InvalidRequest) as refused:
            ExtrasRequest(**{field: value})
        assert refused.value.field == field
    # A stored job comes back through the same model: a record edited past a limit does not load.
    stored = GenerationRequest(prompt="a", init_image=image).to_dict()
    assert GenerationRequest.from_dict(stored).mode == "img2img"
    with pytest.raises(InvalidRequest, match="n_iter"):
        GenerationRequest.from_dict({**stored, "n_iter": MAX_N_ITER + 1})
