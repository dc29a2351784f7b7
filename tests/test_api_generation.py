"""/sdapi/v1 txt2img, img2img, extras and png-info: A1111 shapes, validation, errors, size limits."""
import base64
import io
import json

from PIL import Image

from test_api_support import build_world, world  # noqa: F401  (fixture)
from webui.images import encode_png_base64, read_infotext
from webui.infotext import format_infotext
from webui.schemas import InvalidRequest, JobStatus, NotFound


def _b64(image, prefix=False):
    text = encode_png_base64(image, None)
    return "data:image/png;base64," + text if prefix else text


def _decode(text):
    return Image.open(io.BytesIO(base64.b64decode(text)))


def test_txt2img_returns_images_with_parameters_chunk_and_a1111_info(world):
    body = {"prompt": "a red square", "negative_prompt": "blurry", "seed": 42, "steps": 3, "width": 32,
            "height": 24, "batch_size": 2, "cfg_scale": 5, "sampler_name": "DPM++ 2M", "scheduler": "Karras",
            "styles": [], "override_settings": {"CLIP_stop_at_last_layers": 2}, "some_extension_field": [1, 2]}
    response = world.client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"images", "parameters", "info"}
    assert len(data["images"]) == 2
    first = _decode(data["images"][0])
    assert first.size == (32, 24)
    text = read_infotext(first)
    assert text.startswith("a red square\nNegative prompt: blurry\nSteps: 3, Sampler: DPM++ 2M")
    assert "Seed: 42" in text and "Clip skip: 2" in text
    assert "Seed: 43" in read_infotext(_decode(data["images"][1]))

    info = json.loads(data["info"])
    for key in ("prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds", "subseed",
                "all_subseeds", "width", "height", "sampler_name", "cfg_scale", "steps", "batch_size",
                "restore_faces", "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash",
                "seed_resize_from_w", "seed_resize_from_h", "denoising_strength", "extra_generation_params",
                "index_of_first_image", "infotexts", "styles", "job_timestamp", "clip_skip",
                "is_using_inpainting_conditioning", "version"):
        assert key in info, key
    assert info["all_seeds"] == [42, 43] and info["seed"] == 42
    assert info["infotexts"][0] == text and info["clip_skip"] == 2
    assert info["sd_model_name"] == "tiny" and info["extra_generation_params"]["Lora hashes"] == "a: 1, b: 2"
    assert data["parameters"]["prompt"] == "a red square" and data["parameters"]["steps"] == 3

    kind, request = world.engine.requests[-1]
    assert kind == "txt2img"
    assert (request.steps, request.width, request.height, request.batch_size) == (3, 32, 24, 2)
    assert request.sampler_name == "DPM++ 2M" and request.scheduler == "Karras" and request.clip_skip == 2
    assert request.save_images is False  # A1111's API default


def test_txt2img_a1111_defaults_and_legacy_sampler_index(world):
    response = world.client.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 16, "height": 16,
                                                            "sampler_index": "Euler a", "steps": None})
    assert response.status_code == 200, response.text
    request = world.engine.requests[-1][1]
    assert request.sampler_name == "Euler a" and request.steps == 50 and request.scheduler == "Automatic"
    world.client.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 16, "height": 16})
    assert world.engine.requests[-1][1].sampler_name == "Euler"


def test_override_checkpoint_resolves_to_catalog_title_or_404(world):
    title = world.services.catalog.checkpoints()[0].title
    ok = world.client.post("/sdapi/v1/txt2img", json={"width": 16, "height": 16,
                                                      "override_settings": {"sd_model_checkpoint": "tiny"}})
    assert ok.status_code == 200
    assert world.engine.requests[-1][1].checkpoint == title
    missing = world.client.post("/sdapi/v1/txt2img", json={"override_settings": {"sd_model_checkpoint": "nope"}})
    assert missing.status_code == 404
    assert missing.json()["error"] == "NotFound" and "nope" in missing.json()["detail"]


def test_wrong_types_give_422_naming_the_field(world):
    for body, field in (({"steps": "many"}, "steps"), ({"width": -5}, "width"), ({"seed": [1]}, "seed"),
                        ({"cfg_scale": "x"}, "cfg_scale"), ({"enable_hr": "perhaps"}, "enable_hr")):
        response = world.client.post("/sdapi/v1/txt2img", json=body)
        assert response.status_code == 422, body
        data = response.json()
        assert data["field"] == field and field in data["detail"], data
        assert data["error"] == "ValidationError"
    bad_json = world.client.post("/sdapi/v1/txt2img", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 422 and "error" in bad_json.json()
    clip = world.client.post("/sdapi/v1/txt2img", json={"override_settings": {"CLIP_stop_at_last_layers": 0}})
    assert clip.status_code == 422 and clip.json()["field"] == "override_settings.CLIP_stop_at_last_layers"
    assert world.engine.requests == []  # nothing reached the engine


def test_img2img_accepts_base64_with_and_without_data_prefix(world):
    init = Image.new("RGB", (16, 16), (0, 255, 0))
    mask = Image.new("L", (16, 16), 255)
    for prefix in (False, True):
        response = world.client.post("/sdapi/v1/img2img", json={
            "init_images": [_b64(init, prefix)], "mask": _b64(mask, prefix), "denoising_strength": 0.3,
            "width": 16, "height": 16, "mask_blur": 2, "inpainting_fill": 1, "inpaint_full_res": False,
            "inpaint_full_res_padding": 8, "inpainting_mask_invert": 1, "resize_mode": 2, "seed": 5})
        assert response.status_code == 200, response.text
        kind, request = world.engine.requests[-1]
        assert kind == "img2img" and request.mode == "inpaint"
        assert request.init_image.getpixel((1, 1)) == (0, 255, 0)
        assert (request.denoising_strength, request.mask_blur, request.inpainting_fill) == (0.3, 2, 1)
        assert (request.inpaint_full_res, request.inpaint_full_res_padding) == (False, 8)
        assert (request.inpainting_mask_invert, request.resize_mode) == (1, 2)
        data = response.json()
        assert data["parameters"]["init_images"] is None  # not echoed back unless include_init_images
        assert json.loads(data["info"])["denoising_strength"] == 0.3


def test_img2img_bad_images_are_422(world):
    missing = world.client.post("/sdapi/v1/img2img", json={"prompt": "x"})
    assert missing.status_code == 422 and missing.json()["field"] == "init_images"
    garbage = world.client.post("/sdapi/v1/img2img", json={"init_images": ["bm90IGFuIGltYWdl"]})
    assert garbage.status_code == 422 and garbage.json()["field"] == "init_images"
    bad_mask = world.client.post("/sdapi/v1/img2img", json={
        "init_images": [_b64(Image.new("RGB", (8, 8)))], "mask": "data:image/png;base64,!!!"})
    assert bad_mask.status_code == 422 and bad_mask.json()["field"] == "mask"
    url = world.client.post("/sdapi/v1/img2img", json={"init_images": ["http://example.com/a.png"]})
    assert url.status_code == 422 and "URL" in url.json()["detail"]


def test_images_and_bodies_over_the_pixel_limit_are_refused(tmp_path):
    small = build_world(tmp_path, max_image_pixels=64 * 64)
    big = _b64(Image.new("RGB", (100, 100)))
    response = small.client.post("/sdapi/v1/img2img", json={"init_images": [big], "width": 32, "height": 32})
    assert response.status_code == 413 and response.json()["field"] == "init_images"
    too_wide = small.client.post("/sdapi/v1/txt2img", json={"width": 128, "height": 128})
    assert too_wide.status_code == 422 and too_wide.json()["field"] == "width"
    hires = small.client.post("/sdapi/v1/txt2img", json={"width": 64, "height": 64, "enable_hr": True})
    assert hires.status_code == 422 and hires.json()["field"] == "hr_scale"
    huge_body = small.client.post("/sdapi/v1/png-info", json={"image": "A" * 1_200_000})
    assert huge_body.status_code == 413 and huge_body.json()["error"] == "PayloadTooLarge"
    assert small.engine.requests == []


def test_failed_jobs_map_to_json_errors(world):
    world.engine.fail_with = InvalidRequest("width must be a multiple of 8", field="width")
    bad = world.client.post("/sdapi/v1/txt2img", json={"width": 16, "height": 16})
    assert bad.status_code == 422 and "multiple of 8" in bad.json()["detail"]
    world.engine.fail_with = NotFound("LoRA not found: x")
    assert world.client.post("/sdapi/v1/txt2img", json={"width": 16, "height": 16}).status_code == 404
    world.engine.fail_with = RuntimeError("CUDA exploded")
    crash = world.client.post("/sdapi/v1/txt2img", json={"width": 16, "height": 16})
    assert crash.status_code == 500 and "CUDA exploded" in crash.json()["detail"]
    unknown_sampler = world.client.post("/sdapi/v1/txt2img", json={"sampler_name": "Nope", "width": 16, "height": 16})
    assert unknown_sampler.status_code == 200 and "Nope" in unknown_sampler.json()["info"]  # A1111 falls back too
    ok = world.client.post("/sdapi/v1/txt2img", json={"width": 16, "height": 16})
    assert ok.status_code == 200  # the queue goes on after failures


def test_interrupted_job_returns_the_finished_images(world):
    world.engine.interrupt_after = 2
    response = world.client.post("/sdapi/v1/txt2img", json={"width": 16, "height": 16, "batch_size": 4, "seed": 7})
    assert response.status_code == 200
    data = response.json()
    assert len(data["images"]) == 2 and json.loads(data["info"])["all_seeds"] == [7, 8]


def test_send_images_false_returns_no_images(world):
    response = world.client.post("/sdapi/v1/txt2img", json={"width": 16, "height": 16, "send_images": False})
    assert response.status_code == 200 and response.json()["images"] == []


def test_png_info_round_trip(world):
    text = format_infotext("a cat, (dog:1.2)", "ugly", {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7,
                                                        "Seed": 1234, "Size": "512x512", "Lora hashes": "x: 1, y: 2"})
    image = Image.new("RGB", (8, 8))
    response = world.client.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," +
                                                              encode_png_base64(image, text)})
    assert response.status_code == 200
    data = response.json()
    assert data["info"] == text and data["items"]["parameters"] == text
    params = data["parameters"]
    assert params["Prompt"] == "a cat, (dog:1.2)" and params["Negative prompt"] == "ugly"
    assert (params["Size-1"], params["Size-2"], params["Seed"]) == ("512", "512", "1234")
    assert params["Lora hashes"] == "x: 1, y: 2"
    plain = world.client.post("/sdapi/v1/png-info", json={"image": _b64(image)})
    assert plain.json() == {"info": "", "items": {}, "parameters": {}}
    assert world.client.post("/sdapi/v1/png-info", json={}).json()["field"] == "image"


def test_txt2img_images_feed_png_info(world):
    made = world.client.post("/sdapi/v1/txt2img", json={"prompt": "loop", "seed": 3, "width": 16, "height": 16})
    image_b64 = made.json()["images"][0]
    params = world.client.post("/sdapi/v1/png-info", json={"image": image_b64}).json()["parameters"]
    assert params["Prompt"] == "loop" and params["Seed"] == "3"


def test_extras_single_and_batch(world):
    image = Image.new("RGB", (8, 6), (9, 9, 9))
    single = world.client.post("/sdapi/v1/extra-single-image", json={
        "image": _b64(image, prefix=True), "upscaling_resize": 2, "upscaler_1": "Lanczos"})
    assert single.status_code == 200, single.text
    data = single.json()
    assert _decode(data["image"]).size == (16, 12)
    assert "Postprocess upscaler: Lanczos" in data["html_info"] and data["html_info"].startswith("<p>")
    kind, request = world.engine.requests[-1]
    assert kind == "extras" and request.save_images is False and request.upscale_first is False

    batch = world.client.post("/sdapi/v1/extra-batch-images", json={
        "imageList": [{"data": _b64(image), "name": "a.png"}, {"data": _b64(image, True), "name": "b.png"}],
        "upscaling_resize": 3})
    assert batch.status_code == 200
    assert [_decode(i).size for i in batch.json()["images"]] == [(24, 18), (24, 18)]
    assert world.engine.requests[-1][1].names == ["a.png", "b.png"]

    assert world.client.post("/sdapi/v1/extra-single-image", json={}).json()["field"] == "image"
    bad = world.client.post("/sdapi/v1/extra-single-image", json={"image": _b64(image), "gfpgan_visibility": 2})
    assert bad.status_code == 422 and bad.json()["field"] == "gfpgan_visibility"
    empty = world.client.post("/sdapi/v1/extra-batch-images", json={"imageList": []})
    assert empty.status_code == 422 and empty.json()["field"] == "imageList"


def test_api_jobs_go_through_the_queue(world):
    world.client.post("/sdapi/v1/txt2img", json={"width": 16, "height": 16})
    queue = world.services.queue
    jobs = getattr(queue, "jobs", None)
    if isinstance(jobs, dict):  # the stand-in records them
        assert [j.status for j in jobs.values()] == [JobStatus.SUCCEEDED]
    assert len(world.engine.requests) == 1


def test_queue_full_is_429_with_retry_after(tmp_path):
    full = build_world(tmp_path, max_queue_length=0)
    response = full.client.post("/sdapi/v1/txt2img", json={"width": 16, "height": 16})
    assert response.status_code == 429
    assert response.headers.get("retry-after") and response.json()["error"] == "QueueFull"


def test_infotext_field_fills_what_the_client_did_not_send(world):
    infotext = "a cat\nNegative prompt: dog\nSteps: 7, Sampler: DDIM, CFG scale: 3, Seed: 99, Size: 24x16, Clip skip: 2"
    response = world.client.post("/sdapi/v1/txt2img", json={"infotext": infotext, "steps": 4})
    assert response.status_code == 200, response.text
    request = world.engine.requests[-1][1]
    assert (request.prompt, request.negative_prompt) == ("a cat", "dog")
    assert request.steps == 4  # sent explicitly: wins over the infotext
    assert (request.sampler_name, request.cfg_scale, request.seed) == ("DDIM", 3.0, 99)
    assert (request.width, request.height, request.clip_skip) == (24, 16, 2)
    bad = world.client.post("/sdapi/v1/txt2img", json={"infotext": "x\nSteps: 0, Seed: 1, Size: 8x8"})
    assert bad.status_code == 422 and bad.json()["field"] == "infotext"
