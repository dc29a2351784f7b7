"""Guidance add-ons through /sdapi/v1 on the real app wiring: extension payloads, 422s, PNG Info round trip."""
import json

import pytest


@pytest.fixture
def client(settings, serve_app):
    return serve_app(settings)[0]


BODY = {"prompt": "a red circle", "negative_prompt": "blue", "seed": 7, "steps": 2, "width": 64, "height": 64,
        "sampler_name": "Euler", "cfg_scale": 12}


def test_extension_payloads_run_and_png_info_reads_their_keys_back(client):
    # As the extensions' API clients send them: positional args under the script title.
    body = {**BODY, "alwayson_scripts": {
        "Dynamic Thresholding (CFG Scale Fix)": {"args": [True, 6.5, 99.0, "Linear Down", 1.0]},
        "freeu integrated (sd 1.x, sd 2.x, sdxl)": {"args": [True, 1.3, 1.4, 0.9, 0.2, 0, 1]},
        "PerturbedAttentionGuidance Integrated": {"args": [True, 2.0]},
        "Regional Prompter": {"args": [False]},
    }}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    extra = info["extra_generation_params"]
    assert extra["Dynamic thresholding enabled"] == "True" and float(extra["Mimic scale"]) == 6.5
    assert extra["Mimic mode"] == "Linear Down" and float(extra["Threshold percentile"]) == 99.0
    assert float(extra["freeu_b1"]) == 1.3 and float(extra["pagi_scale"]) == 2.0
    assert any("Regional Prompter" in w for w in info["warnings"])

    parsed = client.post("/sdapi/v1/png-info", json={"image": response.json()["images"][0]}).json()["parameters"]
    assert parsed["Dynamic thresholding enabled"] == "True" and parsed["Mimic mode"] == "Linear Down"
    assert parsed["freeu_enabled"] == "True" and float(parsed["pagi_scale"]) == 2.0

    named = client.post("/sdapi/v1/txt2img", json={**BODY, "addons": {"dynamic_thresholding": {
        "enabled": True, "mimic_scale": 6.5, "threshold_percentile": 99.0, "mimic_mode": "Linear Down",
        "mimic_scale_min": 1.0}, "freeu": {"enabled": True, "b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2},
        "perturbed_attention": {"enabled": True, "scale": 2.0}}})
    assert named.json()["images"] == response.json()["images"]  # our named fields are the same job


@pytest.mark.parametrize("extra, field", [
    ({"alwayson_scripts": {"Dynamic Thresholding (CFG Scale Fix)": {"args": [True, "hot"]}}}, "mimic_scale"),
    ({"alwayson_scripts": {"Soft Inpainting": {"args": [True, 1, 0.5, 0.5]}}}, "inpaint_detail_preservation"),
    ({"addons": {"freeu": {"enabled": True, "b9": 1}}}, "addons.freeu"),
    ({"addons": {"sharpen": {}}}, "addons"),
])
def test_bad_addon_payloads_are_422_naming_the_field(client, extra, field):
    response = client.post("/sdapi/v1/txt2img", json={**BODY, **extra})
    assert response.status_code == 422
    assert field in json.dumps(response.json())


def test_the_infotext_field_brings_the_addons_back(client):
    first = client.post("/sdapi/v1/txt2img", json={**BODY, "addons": {"dynamic_thresholding": {
        "enabled": True, "mimic_scale": 4.0, "variability_measure": "STD"}}})
    text = json.loads(first.json()["info"])["infotexts"][0]
    again = client.post("/sdapi/v1/txt2img", json={"infotext": text})
    assert again.status_code == 200, again.text
    assert json.loads(again.json()["info"])["infotexts"][0] == text
    assert again.json()["images"] == first.json()["images"]


def test_script_info_lists_each_addons_args_in_positional_order(client):
    info = client.get("/sdapi/v1/script-info").json()
    dt = next(e for e in info if e["name"] == "dynamic thresholding (cfg scale fix)" and not e["is_img2img"])
    assert dt["is_alwayson"] is True
    assert [a["label"] for a in dt["args"]][:3] == ["Enable Dynamic Thresholding (CFG Scale Fix)", "Mimic CFG Scale",
                                                    "Top percentile of latents to clamp"]
    assert dt["args"][1]["value"] == 7.0 and dt["args"][3]["choices"][0] == "Constant"
    assert not any(e["name"] == "soft inpainting" and not e["is_img2img"] for e in info)
