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


def test_unknown_hires_checkpoint_sampler_or_schedule_is_422_naming_the_field(world):
    for field in ("hr_checkpoint_name", "hr_sampler_name", "hr_scheduler"):
        response = world.client.post("/sdapi/v1/txt2img", json={"enable_hr": True, field: "nope"})
        assert response.status_code == 422, field
        assert response.json()["field"] == field and "nope" in response.json()["detail"]
    assert world.engine.requests == []


# A1111's request models (StableDiffusionTxt2ImgProcessingAPI / StableDiffusionImg2ImgProcessingAPI, 1.10),
# each field with a value that is not its default. Every one must change what the engine is asked to do,
# show in the response, be refused with a 422 naming it, or be listed under ``warnings`` in ``info``.
_PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
COMMON_FIELDS = {
    "prompt": "x", "negative_prompt": "y", "styles": ["s"], "seed": 5, "subseed": 5, "subseed_strength": 0.5,
    "seed_resize_from_h": 64, "seed_resize_from_w": 64, "sampler_name": "DPM++ 2M", "scheduler": "Karras",
    "batch_size": 2, "n_iter": 2, "steps": 3, "cfg_scale": 3.0, "width": 24, "height": 24, "restore_faces": True,
    "tiling": True, "do_not_save_samples": True, "do_not_save_grid": True, "eta": 0.5, "denoising_strength": 0.3,
    "s_min_uncond": 0.5, "s_churn": 0.5, "s_tmax": 5.0, "s_tmin": 0.5, "s_noise": 0.9,
    "override_settings": {"CLIP_stop_at_last_layers": 2}, "override_settings_restore_afterwards": False,
    "refiner_checkpoint": "tiny", "refiner_switch_at": 0.5, "disable_extra_networks": True,
    "comments": {"a": "b"}, "sampler_index": "DPM++ 2M", "script_name": "nope", "script_args": [1],
    "send_images": False, "save_images": False, "alwayson_scripts": {"no such script": {"args": []}},
    "force_task_id": "task-1", "infotext": "a\nSteps: 2, Sampler: Euler, CFG scale: 3",
}
TXT2IMG_FIELDS = {
    **COMMON_FIELDS, "enable_hr": True, "firstpass_image": _PIXEL, "firstphase_width": 32, "firstphase_height": 32,
    "hr_scale": 1.5, "hr_upscaler": "Lanczos", "hr_second_pass_steps": 2, "hr_resize_x": 32, "hr_resize_y": 32,
    "hr_checkpoint_name": "tiny", "hr_sampler_name": "DPM++ 2M", "hr_scheduler": "Karras", "hr_prompt": "h",
    "hr_negative_prompt": "hn",
}
IMG2IMG_FIELDS = {
    **COMMON_FIELDS, "init_images": [_PIXEL, _PIXEL], "resize_mode": 1, "image_cfg_scale": 1.5, "mask": _PIXEL,
    "mask_blur_x": 8, "mask_blur_y": 2, "mask_blur": 6, "mask_round": False, "inpainting_fill": 2,
    "inpaint_full_res": False, "inpaint_full_res_padding": 8, "inpainting_mask_invert": 1,
    "initial_noise_multiplier": 0.9, "latent_mask": _PIXEL, "include_init_images": True,
}


def _check_every_field(world, route, fields, base):
    """Each field alone on top of ``base``: honoured (request or response changes), refused or warned."""
    response = world.client.post(route, json=base)
    assert response.status_code == 200, response.text
    baseline, plain = world.engine.requests[-1][1], response.json()
    verdicts = {}
    for name, value in fields.items():
        body = {**base, name: value}
        count = len(world.engine.requests)
        options_before = world.client.get("/sdapi/v1/options").json()
        response = world.client.post(route, json=body)
        if response.status_code == 422 and response.json().get("field") == name:
            verdicts[name] = "refused"
            continue
        assert response.status_code == 200, (name, response.text)
        data = response.json()
        warnings = json.loads(data["info"]).get("warnings", [])
        request = world.engine.requests[-1][1] if len(world.engine.requests) > count else None
        if any(name in w for w in warnings):
            verdicts[name] = "warned"
        elif request is not None and request != baseline:
            verdicts[name] = "honoured"
        elif data["images"] != plain["images"] or data["parameters"].get("init_images") \
                != plain["parameters"].get("init_images"):
            verdicts[name] = "honoured in the response"
        elif world.client.get("/sdapi/v1/options").json() != options_before:
            verdicts[name] = "honoured in the options"
        else:
            verdicts[name] = "SILENTLY IGNORED"
    assert not [n for n, v in verdicts.items() if v == "SILENTLY IGNORED"], verdicts
    return verdicts


def test_every_a1111_txt2img_field_is_honoured_refused_or_warned(world):
    base = {"prompt": "a", "width": 16, "height": 16, "steps": 2, "seed": 1, "save_images": True,
            "override_settings": {"eta_ancestral": 0.5}}
    verdicts = _check_every_field(world, "/sdapi/v1/txt2img", TXT2IMG_FIELDS, base)
    assert verdicts["script_name"] == "refused"
    assert verdicts["firstpass_image"] == "warned"
    for name in ("tiling", "disable_extra_networks", "refiner_checkpoint", "force_task_id"):
        assert verdicts[name] == "honoured", name
    assert verdicts["refiner_switch_at"] == "warned"  # alone, without a refiner_checkpoint
    assert verdicts["hr_prompt"] == verdicts["do_not_save_samples"] == "honoured"
    assert verdicts["override_settings_restore_afterwards"] == "honoured in the options"


def test_every_a1111_img2img_field_is_honoured_refused_or_warned(world):
    base = {"prompt": "a", "width": 16, "height": 16, "steps": 2, "seed": 1, "save_images": True,
            "init_images": [_PIXEL], "override_settings": {"eta_ancestral": 0.5}}
    verdicts = _check_every_field(world, "/sdapi/v1/img2img", IMG2IMG_FIELDS, base)
    assert verdicts["init_images"] == "refused"  # two images for a batch of one, as A1111
    for name in ("latent_mask", "mask_round", "initial_noise_multiplier", "mask_blur_x", "mask_blur_y"):
        assert verdicts[name] == "honoured", name
    assert verdicts["include_init_images"] == "honoured in the response"


def test_warned_fields_are_not_echoed_as_applied(world):
    body = {"prompt": "a", "width": 16, "height": 16, "comments": {"a": "b"},
            "override_settings": {"no_such_option": 1}}
    info = json.loads(world.client.post("/sdapi/v1/txt2img", json=body).json()["info"])
    assert "comments: not supported by this server; ignored" in info["warnings"]
    assert any(w.startswith("override_settings.no_such_option") for w in info["warnings"])
    assert "Comments" not in info["extra_generation_params"] and "comments" not in info


def test_unknown_script_and_refiner_are_422_naming_the_field(world):
    for body, field in (({"script_name": "no such script"}, "script_name"),
                        ({"refiner_checkpoint": "nope"}, "refiner_checkpoint")):
        response = world.client.post("/sdapi/v1/txt2img", json={"width": 16, "height": 16, **body})
        assert response.status_code == 422 and response.json()["field"] == field, response.text
    assert world.engine.requests == []


def test_one_init_image_per_batch_item_and_mask_blur_per_direction(world):
    body = {"prompt": "a", "width": 16, "height": 16, "batch_size": 2, "init_images": [_PIXEL, _PIXEL],
            "mask": _PIXEL, "mask_blur_x": 8, "mask_blur_y": 0, "initial_noise_multiplier": 0.5}
    assert world.client.post("/sdapi/v1/img2img", json=body).status_code == 200
    request = world.engine.requests[-1][1]
    assert len(request.extra_init_images) == 1 and request.batch_size == 2
    assert (request.mask_blur_x, request.mask_blur_y, request.initial_noise_multiplier) == (8, 0, 0.5)
    both = world.client.post("/sdapi/v1/img2img", json={**body, "mask_blur": 3}).status_code
    assert both == 200 and (world.engine.requests[-1][1].mask_blur_x, world.engine.requests[-1][1].mask_blur_y) == (3, 3)


def test_override_settings_reach_the_job_and_restore_afterwards_false_keeps_them(world):
    body = {"prompt": "a", "width": 16, "height": 16,
            "override_settings": {"vae_tile_size": 256, "initial_noise_multiplier": 0.8, "samples_format": "jpg"}}
    response = world.client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200
    assert world.engine.requests[-1][1].override_settings == body["override_settings"]
    assert "warnings" not in json.loads(response.json()["info"])
    options = world.client.get("/sdapi/v1/options").json()
    assert (options["vae_tile_size"], options["samples_format"]) == (512, "png")  # restored: never changed
    kept = world.client.post("/sdapi/v1/txt2img", json={**body, "override_settings_restore_afterwards": False})
    assert kept.status_code == 200
    options = world.client.get("/sdapi/v1/options").json()
    assert (options["vae_tile_size"], options["initial_noise_multiplier"], options["samples_format"]) == (256, 0.8,
                                                                                                          "jpg")
    bad = world.client.post("/sdapi/v1/txt2img", json={**body, "override_settings": {"vae_tile_size": "big"}})
    assert bad.status_code == 422 and bad.json()["field"] == "override_settings.vae_tile_size"
    wide = json.loads(world.client.post("/sdapi/v1/txt2img", json={
        **body, "override_settings": {"sd_checkpoints_limit": 3}}).json()["info"])
    assert any(w.startswith("override_settings.sd_checkpoints_limit: a server-wide option") for w in wide["warnings"])


def test_options_list_every_option_and_unknown_keys_are_warned(world):
    from webui.options import DEFAULT_OPTIONS

    options = world.client.get("/sdapi/v1/options").json()
    assert set(DEFAULT_OPTIONS) <= set(options)
    response = world.client.post("/sdapi/v1/options", json={"eta_ancestral": 0.5, "sd_hypernetwork": "None"})
    assert response.status_code == 200
    assert response.json()["warnings"] == ["sd_hypernetwork: not an option this server has; ignored"]
    assert world.client.get("/sdapi/v1/options").json()["eta_ancestral"] == 0.5


def test_refiner_fields_reach_the_request(world):
    title = world.services.catalog.checkpoints()[0].title
    body = {"prompt": "a", "width": 16, "height": 16, "refiner_checkpoint": "tiny"}
    assert world.client.post("/sdapi/v1/txt2img", json=body).status_code == 200
    request = world.engine.requests[-1][1]
    assert (request.refiner_checkpoint, request.refiner_switch_at) == (title, 0.8)
    response = world.client.post("/sdapi/v1/txt2img", json={**body, "refiner_switch_at": 1.5})
    assert response.status_code == 422 and response.json()["field"] == "refiner_switch_at"


def test_firstpass_image_reaches_the_hires_request(world):
    body = {"prompt": "a", "width": 16, "height": 16, "enable_hr": True, "firstpass_image": _PIXEL}
    response = world.client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200 and "warnings" not in json.loads(response.json()["info"])
    assert world.engine.requests[-1][1].firstpass_image.size == (1, 1)
    bad = world.client.post("/sdapi/v1/txt2img", json={**body, "firstpass_image": "not an image"})
    assert bad.status_code == 422 and bad.json()["field"] == "firstpass_image"
