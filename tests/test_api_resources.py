"""/sdapi/v1 listings and management: sd-models, options, samplers, loras, VAEs, embeddings, styles..."""
import json

import numpy as np

from test_api_support import SAMPLERS, write_header_checkpoint, write_lora, world  # noqa: F401  (fixture)


def test_sd_models_lists_the_checkpoint_in_the_models_folder(world):
    response = world.client.get("/sdapi/v1/sd-models")
    assert response.status_code == 200
    [item] = response.json()
    info = world.services.catalog.checkpoints()[0]
    assert item["title"] == f"tiny.safetensors [{info.sha256[:10]}]"
    assert item["model_name"] == "tiny" and item["hash"] == info.sha256[:10] and item["sha256"] == info.sha256
    assert item["filename"].endswith("tiny.safetensors") and "config" in item


def test_refresh_checkpoints_finds_new_files(world):
    write_header_checkpoint(world.models_dir / "Stable-diffusion" / "sub" / "other.safetensors", inpainting=True)
    assert len(world.client.get("/sdapi/v1/sd-models").json()) == 1
    assert world.client.post("/sdapi/v1/refresh-checkpoints").status_code == 200
    names = sorted(m["model_name"] for m in world.client.get("/sdapi/v1/sd-models").json())
    assert names == ["sub/other", "tiny"]


def test_posting_sd_model_checkpoint_switches_the_model(world):
    title = world.services.catalog.checkpoints()[0].title
    response = world.client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny", "CLIP_stop_at_last_layers": 2,
                                                            "some_a1111_only_option": 3})
    assert response.status_code == 200, response.text
    assert world.models.selected == [title]
    options = world.client.get("/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"] == title and options["CLIP_stop_at_last_layers"] == 2
    assert options["sd_checkpoint_hash"] == world.services.catalog.checkpoints()[0].sha256
    assert response.json()["ignored"] == ["some_a1111_only_option"]
    # The stored option follows the switch even after the model manager forgets it.
    world.models.current_checkpoint = None
    assert world.client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == title


def test_options_errors_change_nothing(world):
    missing = world.client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "does-not-exist"})
    assert missing.status_code == 404 and missing.json()["error"] == "NotFound"
    wrong_type = world.client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny",
                                                              "CLIP_stop_at_last_layers": "two"})
    assert wrong_type.status_code == 422 and wrong_type.json()["field"] == "CLIP_stop_at_last_layers"
    assert world.models.selected == []  # the bad value stopped the switch before it started
    assert world.client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 1
    not_object = world.client.post("/sdapi/v1/options", json=[1, 2])
    assert not_object.status_code == 422


def test_unload_and_reload_checkpoint(world):
    world.models.select_checkpoint("tiny")
    assert world.client.post("/sdapi/v1/unload-checkpoint").status_code == 200
    assert world.models.unloads == 1 and world.models.current_checkpoint is None
    assert world.client.post("/sdapi/v1/reload-checkpoint").status_code == 200 and world.models.reloads == 1


def test_samplers_and_schedulers(world):
    samplers = world.client.get("/sdapi/v1/samplers").json()
    assert [s["name"] for s in samplers] == SAMPLERS
    by_name = {s["name"]: s for s in samplers}
    assert by_name["DPM++ 2M"] == {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"], "options": {"scheduler": "karras"}}
    assert by_name["Euler a"]["aliases"] == ["k_euler_a", "k_euler_ancestral"]
    assert {"LCM", "DDIM CFG++", "Restart", "DPM++ 3M SDE", "DPM adaptive", "DDPM"} <= set(by_name)
    schedulers = world.client.get("/sdapi/v1/schedulers").json()
    assert [s["label"] for s in schedulers] == ["Automatic", "Uniform", "Karras", "Exponential", "Polyexponential",
                                                "SGM Uniform", "KL Optimal", "Align Your Steps", "Simple", "Normal",
                                                "DDIM", "Beta"]
    karras = schedulers[2]
    assert karras["name"] == "karras" and karras["default_rho"] == 7.0 and karras["need_inner_model"] is False
    assert schedulers[5]["name"] == "sgm_uniform" and schedulers[5]["aliases"] == ["SGMUniform"]


def test_every_advertised_sampler_alias_and_schedule_name_is_accepted(world):
    """What /samplers and /schedulers list, the engine runs without a fallback warning (k_lcm included)."""
    names = [alias for s in world.client.get("/sdapi/v1/samplers").json() for alias in [s["name"], *s["aliases"]]]
    schedules = [s["name"] for s in world.client.get("/sdapi/v1/schedulers").json()]
    for name, schedule in zip(names, schedules * 3):
        info = world.client.post("/sdapi/v1/txt2img", json={"sampler_name": name, "scheduler": schedule,
                                                           "width": 16, "height": 16}).json()["info"]
        assert "warnings" not in json.loads(info), (name, schedule)


def test_unknown_sampler_and_schedule_fall_back_with_a_warning(world):
    body = {"sampler_name": "Nope", "scheduler": "weird", "width": 16, "height": 16}
    response = world.client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200
    info = json.loads(response.json()["info"])
    assert info["sampler_name"] == "DPM++ 2M"
    assert any("'Nope'" in w and "DPM++ 2M" in w for w in info["warnings"])
    assert any("'weird'" in w and "Automatic" in w for w in info["warnings"])


def test_loras_with_metadata_and_refresh(world):
    assert world.client.get("/sdapi/v1/loras").json() == []
    write_lora(world.models_dir / "Lora" / "style.safetensors", {"ss_output_name": "myStyle", "ss_base_model_version": "sd_v1"})
    assert world.client.post("/sdapi/v1/refresh-loras").status_code == 200
    [item] = world.client.get("/sdapi/v1/loras").json()
    assert item["name"] == "style" and item["alias"] == "myStyle"
    assert item["path"].endswith("style.safetensors") and item["metadata"]["ss_base_model_version"] == "sd_v1"


def test_vae_and_embeddings_lists(world):
    from safetensors.numpy import save_file

    save_file({"decoder.conv_in.weight": np.zeros((4, 4, 3, 3), np.float16)},
              str(world.models_dir / "VAE" / "kl-f8.safetensors"))
    save_file({"emb_params": np.zeros((3, 768), np.float16)}, str(world.models_dir / "embeddings" / "bad-hands.safetensors"))
    world.services.catalog.refresh()
    assert world.client.get("/sdapi/v1/sd-vae").json() == [
        {"model_name": "kl-f8.safetensors", "filename": str(world.models_dir / "VAE" / "kl-f8.safetensors")}]
    embeddings = world.client.get("/sdapi/v1/embeddings").json()
    assert embeddings["skipped"] == {}
    assert embeddings["loaded"]["bad-hands"]["vectors"] == 3 and embeddings["loaded"]["bad-hands"]["shape"] == 768
    # When the model manager reports what fits the loaded model, that wins.
    world.services.extra["embeddings_status"] = lambda: {"loaded": {}, "skipped": {"bad-hands": {"shape": 768}}}
    assert world.client.get("/sdapi/v1/embeddings").json()["skipped"] == {"bad-hands": {"shape": 768}}


def test_upscalers_face_restorers_and_latent_modes_without_registries(world):
    upscalers = world.client.get("/sdapi/v1/upscalers").json()
    assert [u["name"] for u in upscalers] == ["None", "Lanczos", "Nearest"]
    assert world.client.get("/sdapi/v1/face-restorers").json() == []
    modes = [m["name"] for m in world.client.get("/sdapi/v1/latent-upscale-modes").json()]
    assert modes[0] == "Latent" and "Latent (nearest-exact)" in modes


def test_upscalers_from_the_real_registry(world):
    from webui.postprocess.upscalers import UpscalerRegistry

    world.services.upscalers = UpscalerRegistry(world.services.settings)
    names = [u["name"] for u in world.client.get("/sdapi/v1/upscalers").json()]
    assert names[:3] == ["None", "Lanczos", "Nearest"]


def test_upscalers_show_a1111_names_with_the_file_they_use(world):
    import torch

    from webui.postprocess.upscalers import UpscalerRegistry
    from test_postprocess_upscalers import compact_state_dict

    folder = world.services.settings.model_folder("RealESRGAN")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"params": compact_state_dict()}, folder / "realesr-animevideov3.pth")
    world.services.upscalers = UpscalerRegistry(world.services.settings)
    items = {u["name"]: u for u in world.client.get("/sdapi/v1/upscalers").json()}
    for name in ("R-ESRGAN General 4xV3", "R-ESRGAN AnimeVideo", "realesr-animevideov3"):
        assert items[name]["model_name"] == "realesr-animevideov3", name
        assert items[name]["model_path"] == str(folder / "realesr-animevideov3.pth") and items[name]["scale"] == 4
    assert items["Lanczos"]["model_name"] is None and items["Lanczos"]["model_path"] is None
    assert set(items["None"]) == {"name", "model_name", "model_path", "model_url", "scale"}


def test_styles_from_the_style_database(world):
    from webui.prompts.styles import StyleDatabase

    world.services.styles = StyleDatabase.from_csv_text("name,prompt,negative_prompt\nOil,\"{prompt}, oil\",blurry\n")
    expected = [{"name": "Oil", "prompt": "{prompt}, oil", "negative_prompt": "blurry"}]
    assert world.client.get("/sdapi/v1/prompt-styles").json() == expected
    assert world.client.get("/sdapi/v1/styles").json() == expected


def test_small_endpoints_answer_json(world):
    flags = world.client.get("/sdapi/v1/cmd-flags").json()
    assert flags["port"] == 7860 and flags["listen"] is False
    memory = world.client.get("/sdapi/v1/memory").json()
    assert set(memory) == {"ram", "cuda"} and (memory["ram"].get("used", 0) > 0 or "error" in memory["ram"])
    scripts = world.client.get("/sdapi/v1/scripts").json()
    assert "dynamic thresholding (cfg scale fix)" in scripts["txt2img"] and "soft inpainting" in scripts["img2img"]
    assert "soft inpainting" not in scripts["txt2img"]
    missing = world.client.get("/sdapi/v1/no-such-endpoint")
    assert missing.status_code == 404 and missing.json()["error"] == "HTTPException"


def test_sampler_settings_travel_from_the_request_and_bad_ones_are_422(world):
    body = {"width": 16, "height": 16, "eta": 0.3, "s_churn": 0.5,
            "override_settings": {"sigma_max": 10.0, "always_discard_next_to_last_sigma": True, "sd_vae": "None"}}
    assert world.client.post("/sdapi/v1/txt2img", json=body).status_code == 200
    request = world.engine.requests[-1][1]
    assert (request.eta, request.s_churn) == (0.3, 0.5)
    assert request.sampler_overrides == {"sigma_max": 10.0, "always_discard_next_to_last_sigma": True}
    bad = world.client.post("/sdapi/v1/txt2img", json={"width": 16, "height": 16,
                                                       "override_settings": {"s_churn": "lots"}})
    assert bad.status_code == 422 and bad.json()["field"] == "override_settings.s_churn"
