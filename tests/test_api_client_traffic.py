"""Real client traffic replayed: SillyTavern's and Open WebUI's A1111 calls (tests/fixtures) work and warn of nothing."""
import json
from pathlib import Path

import pytest

from test_api_support import world  # noqa: F401  (fixture)

TRAFFIC = json.loads((Path(__file__).parent / "fixtures" / "a1111_client_traffic.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("client_name", ["sillytavern", "open_webui"])
def test_client_calls_succeed_and_every_field_is_applied(world, client_name):
    for call in TRAFFIC[client_name]["calls"]:
        response = world.client.request(call["method"], call["path"], json=call.get("body"))
        assert response.status_code == 200, (call["path"], response.text)
        if "images" not in call:
            continue
        data = response.json()
        assert len(data["images"]) == call["images"]
        info = json.loads(data["info"])
        assert "warnings" not in info, info.get("warnings")  # nothing these clients send is left unapplied
        request = world.engine.requests[-1][1]
        body = call["body"]
        assert (request.prompt, request.width, request.steps) == (body["prompt"], body["width"],
                                                                   body.get("steps", 50))
        if "override_settings" in body:
            assert request.clip_skip == body["override_settings"]["CLIP_stop_at_last_layers"]
    assert world.models.selected == [world.services.catalog.checkpoints()[0].title]
