"""Every A1111 request field is honoured or reported: hires fields, refusals, and the warnings in ``info``."""
import json

from test_api_support import build_world, world  # noqa: F401  (fixture)


def test_hires_fields_reach_the_request_with_a1111s_same_values(world):
    title = world.services.catalog.checkpoints()[0].title
    body = {"prompt": "a", "width": 16, "height": 16, "enable_hr": True, "hr_sampler_name": "DPM++ 2M",
            "hr_scheduler": "Karras", "hr_prompt": "b", "hr_negative_prompt": "c", "hr_checkpoint_name": "tiny"}
    assert world.client.post("/sdapi/v1/txt2img", json=body).status_code == 200
    request = world.engine.requests[-1][1]
    assert (request.hr_sampler_name, request.hr_scheduler) == ("DPM++ 2M", "Karras")
    assert (request.hr_prompt, request.hr_negative_prompt, request.hr_checkpoint) == ("b", "c", title)
    same = {**body, "hr_sampler_name": "Use same sampler", "hr_scheduler": "Use same scheduler",
            "hr_checkpoint_name": "Use same checkpoint"}
    assert world.client.post("/sdapi/v1/txt2img", json=same).status_code == 200
    request = world.engine.requests[-1][1]
    assert (request.hr_sampler_name, request.hr_scheduler, request.hr_checkpoint) == (None, None, None)


def test_unknown_hires_checkpoint_is_422_naming_the_field(world):
    response = world.client.post("/sdapi/v1/txt2img", json={"enable_hr": True, "hr_checkpoint_name": "nope"})
    assert response.status_code == 422
    assert response.json()["field"] == "hr_checkpoint_name" and "nope" in response.json()["detail"]
    assert world.engine.requests == []
