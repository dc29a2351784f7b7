"""A1111's scripts through /sdapi/v1 on the real app: real engine, queue and a tiny checkpoint."""
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from webui.images import read_infotext


@pytest.fixture
def app(settings, serve_app):
    return serve_app(settings)


def _decode(text):
    return Image.open(io.BytesIO(base64.b64decode(text)))


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


BASE = {"prompt": "a red circle", "seed": 7, "steps": 1, "width": 64, "height": 64, "sampler_name": "Euler",
        "save_images": True}

# A1111 1.10's X/Y/Z run() order: x_type, x_values, x_values_dropdown, y_..., z_..., draw_legend,
# include_lone_images, include_sub_grids, no_fixed_seeds, vary_seeds_x, vary_seeds_y, vary_seeds_z, margin_size,
# csv_mode. txt2img axis 4 is Steps, 7 is Prompt S/R.
XYZ_ARGS = [4, "1-2", [], 7, "red,blue", [], 0, "", [], True, True, False, False, False, False, False, 0, False]


def test_xyz_plot_with_a1111_positional_args_returns_grid_first_with_legends(app):
    client, services = app
    response = client.post("/sdapi/v1/txt2img", json={**BASE, "script_name": "X/Y/Z plot", "script_args": XYZ_ARGS})
    assert response.status_code == 200, response.text
    images = [_decode(text) for text in response.json()["images"]]
    info = json.loads(response.json()["info"])
    assert len(images) == 1 + 4 and len(info["infotexts"]) == 5  # the grid, then the 2x2 lone images
    assert info["index_of_first_image"] == 1 and len(info["all_seeds"]) == 5
    grid, cells = images[0], images[1:]
    assert all(cell.size == (64, 64) for cell in cells)
    # Legends: a band above the columns and one left of the rows, with dark text in them.
    assert grid.width > 128 and grid.height > 128
    pixels = np.asarray(grid.convert("L"))
    band = grid.height - 128
    assert pixels[:band].min() < 100 and pixels[band:, :grid.width - 128].min() < 100
    # Cells: X changes the steps, Y replaces "red" by "blue" in the prompt (A1111's x + y * len(xs) order).
    texts = [read_infotext(cell) for cell in cells]
    assert [t.split("\n")[0] for t in texts] == ["a red circle", "a red circle", "a blue circle", "a blue circle"]
    assert ["Steps: 1," in texts[0], "Steps: 2," in texts[1]] == [True, True]
    assert 'Script: X/Y/Z plot, X Type: Steps, X Values: 1-2, Y Type: Prompt S/R, Y Values: "red,blue"' \
        in info["infotexts"][0]
    grids = list((services.settings.outdir / "txt2img-grids").rglob("xyz_grid-*.png"))
    assert len(grids) == 1 and Image.open(grids[0]).size == grid.size
    assert len(list((services.settings.outdir / "txt2img-images").rglob("*.png"))) == 4

    # Without lone images (A1111's default) only the grid comes back; do_not_save_grid saves no grid.
    args = list(XYZ_ARGS)
    args[10] = False
    response = client.post("/sdapi/v1/txt2img", json={**BASE, "script_name": "x/y/z plot", "script_args": args,
                                                      "do_not_save_grid": True})
    assert response.status_code == 200 and len(response.json()["images"]) == 1
    assert len(list((services.settings.outdir / "txt2img-grids").rglob("*.png"))) == 1
    # A plain batch honours it too (its grid would otherwise be saved: grid_save is on).
    batch = client.post("/sdapi/v1/txt2img", json={**BASE, "batch_size": 2, "do_not_save_grid": True})
    assert batch.status_code == 200 and "do_not_save_grid" not in batch.json()["info"]
    assert len(list((services.settings.outdir / "txt2img-grids").rglob("*.png"))) == 1


def test_scripts_refuse_what_they_cannot_do_with_422_naming_the_field(app):
    client, _ = app
    cases = [
        ({"script_name": "No such script"}, "script_name"),
        ({"script_name": "Loopback"}, "script_name"),  # img2img only
        ({"script_name": "X/Y/Z plot", "script_args": [43, "Enable", []]}, "script_args"),  # FP8 mode
        ({"script_name": "X/Y/Z plot", "script_args": [7, "green,blue", []]}, "script_args"),  # not in the prompt
        ({"script_name": "X/Y/Z plot", "script_args": [9, "No Such Sampler", []]}, "script_args"),
        ({"script_name": "X/Y/Z plot", "script_args": [11, "missing-model", []]}, "script_args"),
        ({"script_name": "X/Y/Z plot", "script_args": [4, "1-x", []]}, "script_args"),
        ({"script_name": "X/Y/Z plot", "script_args": ["VAE", "no-such-vae", []]}, "script_args"),
        ({"script_name": "X/Y/Z plot", "script_args": ["Hires upscaler", "No Such Upscaler", []]}, "script_args"),
        ({"script_name": "X/Y/Z plot", "script_args": {"x_type": "Steps", "bogus": 1}}, "script_args"),
    ]
    for extra, field in cases:
        response = client.post("/sdapi/v1/txt2img", json={**BASE, **extra})
        assert response.status_code == 422 and response.json()["field"] == field, (extra, response.text)
    native = client.post("/api/v1/jobs", json={"kind": "txt2img", "request": {
        **BASE, "script_name": "X/Y/Z plot", "script_args": {"x_type": "FP8 mode", "x_values": "Enable"}}})
    assert native.status_code == 422 and native.json()["field"] == "script_args"
    assert "FP8 mode" in native.json()["detail"]
    assert services_jobs(client) == 0


def services_jobs(client) -> int:
    return len(client.get("/api/v1/jobs").json().get("jobs", []))


def test_prompt_matrix_and_prompts_from_file(app):
    client, _ = app
    matrix = client.post("/sdapi/v1/txt2img", json={**BASE, "prompt": "a circle|red|on white",
                                                    "script_name": "Prompt matrix", "script_args": []})
    assert matrix.status_code == 200, matrix.text
    info = json.loads(matrix.json()["info"])
    assert len(matrix.json()["images"]) == 1 + 4
    assert [t.split("\n")[0] for t in info["infotexts"][1:]] == \
        ["a circle", "a circle, red", "a circle, on white", "a circle, red, on white"]
    assert _decode(matrix.json()["images"][0]).size[0] > 128  # 2x2 grid with its legend

    lines = 'a red circle\n--prompt "a blue square" --steps 2 --seed 11 --negative_prompt "green"\n'
    listed = client.post("/sdapi/v1/txt2img", json={**BASE, "prompt": "", "script_name": "Prompts from file or textbox",
                                                    "script_args": [False, False, "start", lines]})
    assert listed.status_code == 200, listed.text
    texts = json.loads(listed.json()["info"])["infotexts"]
    assert len(texts) == 2 and texts[0].startswith("a red circle\nSteps: 1,")
    assert texts[1].startswith("a blue square\nNegative prompt: green\nSteps: 2,") and "Seed: 11," in texts[1]
    bad = client.post("/sdapi/v1/txt2img", json={**BASE, "script_name": "Prompts from file or textbox",
                                                 "script_args": [False, False, "start", "--nope 1"]})
    assert bad.status_code == 422 and "--nope" in bad.json()["detail"]


def test_img2img_scripts_loopback_sd_upscale_and_outpainting_sizes(app):
    client, _ = app
    init = _png(Image.new("RGB", (64, 64), (200, 30, 30)))
    body = {**BASE, "init_images": [init], "denoising_strength": 0.6}

    loop = client.post("/sdapi/v1/img2img", json={**body, "script_name": "Loopback",
                                                  "script_args": [2, 0.2, "Linear", "None"]})
    assert loop.status_code == 200, loop.text
    texts = json.loads(loop.json()["info"])["infotexts"]
    assert len(texts) == 3  # the grid of the two loops, then each loop
    assert "Denoising strength: 0.6" in texts[1] and "Denoising strength: 0.2" in texts[2]

    upscaled = client.post("/sdapi/v1/img2img", json={**body, "script_name": "SD upscale",
                                                      "script_args": ["", 32, 1, 2.0]})  # upscaler 1: Lanczos
    assert upscaled.status_code == 200, upscaled.text
    [image] = [_decode(t) for t in upscaled.json()["images"]]
    assert image.size == (128, 128)
    assert "SD upscale overlap: 32, SD upscale upscaler: Lanczos" in json.loads(upscaled.json()["info"])["infotexts"][0]

    mk2 = client.post("/sdapi/v1/img2img", json={**body, "script_name": "Outpainting mk2",
                                                 "script_args": ["", 8, 4, ["left", "right"], 1.0, 0.05]})
    assert mk2.status_code == 200, mk2.text
    assert _decode(mk2.json()["images"][0]).size == (128, 64)  # 64 + 2 x 8, rounded up to 64 px as A1111

    poor = client.post("/sdapi/v1/img2img", json={**body, "script_name": "Poor man's outpainting",
                                                  "script_args": [16, 4, 1, ["up"]]})
    assert poor.status_code == 200, poor.text
    out = _decode(poor.json()["images"][0])
    assert out.size == (64, 80)
    # The original stays at the bottom: its red survives below the redrawn band.
    assert np.asarray(out)[-8:, :, 0].mean() > 120


def test_scripts_and_script_info_list_titles_and_args(app):
    client, _ = app
    scripts = client.get("/sdapi/v1/scripts").json()
    assert {"x/y/z plot", "prompt matrix", "prompts from file or textbox"} <= set(scripts["txt2img"])
    assert {"x/y/z plot", "loopback", "sd upscale", "outpainting mk2", "poor man's outpainting"} \
        <= set(scripts["img2img"])
    assert "loopback" not in scripts["txt2img"]
    info = client.get("/sdapi/v1/script-info").json()
    xyz = next(e for e in info if e["name"] == "x/y/z plot" and not e["is_img2img"])
    assert xyz["is_alwayson"] is False and len(xyz["args"]) == 18
    assert [a["label"] for a in xyz["args"]][:4] == ["X type", "X values", "X values", "Y type"]
    assert "soft inpainting" in scripts["img2img"]  # the add-ons are still listed
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Txt2ImgBody"]["properties"]["script_args"]
    named = {entry.get("title"): entry for entry in schema["anyOf"]}
    assert named["X/Y/Z plot args"]["properties"]["margin_size"]["maximum"] == 500
    assert set(named["SD upscale args"]["properties"]) == {"info", "overlap", "upscaler_index", "scale_factor"}


def test_checkpoint_axis_leaves_the_jobs_own_checkpoint_loaded(settings, serve_app, tiny_checkpoint_dir):
    import shutil

    shutil.copy(tiny_checkpoint_dir / "tiny-sd1-b.safetensors", settings.models_dir / "Stable-diffusion")
    client, services = serve_app(settings)
    first = client.post("/sdapi/v1/txt2img", json={**BASE, "save_images": False})
    assert first.status_code == 200
    loaded = services.models.current_checkpoint.name
    other = "tiny-sd1-b" if "tiny-sd1.safetensors" in loaded else "tiny-sd1"
    response = client.post("/sdapi/v1/txt2img", json={**BASE, "save_images": False, "script_name": "X/Y/Z plot",
                                                      "script_args": [11, other, [], 0, "", [], 0, "", [], False]})
    assert response.status_code == 200, response.text
    assert "Model: " + other in json.loads(response.json()["info"])["infotexts"][0]
    assert services.models.current_checkpoint.name == loaded
