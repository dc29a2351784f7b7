"""Saving as A1111 does: name and folder patterns, formats with infotext, .txt sidecars, grids, safe names,
output folders that stay inside the output root, and the options that drive it (API and Settings tab)."""
import base64
import datetime
import io
from pathlib import Path

import pytest
from PIL import Image

from webui.filename_patterns import NameContext
from webui.filenames import FORBIDDEN_CHARS, MAX_NAME_BYTES, is_reserved_name, utf8_length
from webui.images import read_infotext, write_image
from webui.options import Options
from webui.saving import SAVING_OPTIONS, JobSaver, effective_options, image_grid, output_folder
from webui.schemas import InvalidRequest

DAY = datetime.datetime(2024, 5, 17, 12, 0, tzinfo=datetime.timezone.utc)
INFO = "a red circle\nNegative prompt: blue\nSteps: 3, Sampler: Euler, CFG scale: 5, Seed: 42, Size: 16x16"


def _opts(**changes):
    return effective_options(None, changes)


def _ctx(**changes):
    base = dict(seed=42, all_seeds=[42], prompt="a red circle", steps=3, cfg_scale=5.0, sampler_name="Euler",
                model_name="tiny-sd1", model_hash="abcdef1234", now=DAY)
    base.update(changes)
    return NameContext(**base)


def _image(color=(200, 10, 10), size=(16, 16)):
    return Image.new("RGB", size, color)


def _assert_valid_inside(path, root):
    relative = path.resolve().relative_to(root.resolve())  # raises when outside
    for part in relative.parts:
        assert utf8_length(part) <= MAX_NAME_BYTES, part
        assert not is_reserved_name(part) and not set(part) & set(FORBIDDEN_CHARS), part
        assert part == part.rstrip(". ") and part.strip(".")
    assert path.is_file()


def test_default_options_keep_the_a1111_layout(tmp_path):
    saver = JobSaver(tmp_path, "txt2img", _opts())
    first = saver.save(_image(), INFO, _ctx())
    second = saver.save(_image(), INFO, _ctx(seed=43))
    assert first == tmp_path / "txt2img-images" / "2024-05-17" / "00000-42.png"
    assert second.name == "00001-43.png"
    assert read_infotext(Image.open(first)) == INFO


def test_name_and_folder_patterns(tmp_path):
    opts = _opts(samples_filename_pattern="[seed]-[prompt_words]-[model_hash]",
                 directories_filename_pattern="[date]/[model_name]", directories_max_prompt_words=2)
    path = JobSaver(tmp_path, "img2img", opts).save(_image(), INFO, _ctx())
    assert path == tmp_path / "img2img-images" / "2024-05-17" / "tiny-sd1" / "00000-42-a red-abcdef1234.png"
    flat = JobSaver(tmp_path, "txt2img", _opts(save_to_dirs=False)).save(_image(), INFO, _ctx())
    assert flat == tmp_path / "txt2img-images" / "00000-42-a red circle.png"  # A1111: [seed]-[prompt_spaces]


@pytest.mark.parametrize("prompt", ["\U0001F600" * 300, "../../x", "CON", "/etc/passwd", "a\\..\\..\\b", "NUL.txt"])
def test_hostile_prompts_save_inside_the_folder_with_valid_names(tmp_path, prompt):
    for add_number in (True, False):
        opts = _opts(samples_filename_pattern="[prompt_spaces]", directories_filename_pattern="[prompt_spaces]/x",
                     save_images_add_number=add_number, save_txt=True)
        path = JobSaver(tmp_path, "txt2img", opts).save(_image(), INFO, _ctx(prompt=prompt))
        _assert_valid_inside(path, tmp_path / "txt2img-images")
        assert path.with_suffix(".txt").read_text(encoding="utf-8") == INFO + "\n"
        assert read_infotext(Image.open(path)) == INFO


def test_patterns_written_to_climb_out_stay_inside(tmp_path):
    opts = _opts(directories_filename_pattern="../../../../outside/[seed]", samples_filename_pattern="../../[seed]",
                 outdir_txt2img_samples="../../elsewhere")
    path = JobSaver(tmp_path / "out", "txt2img", opts).save(_image(), INFO, _ctx())
    _assert_valid_inside(path, tmp_path / "out")
    assert path.parent == tmp_path / "out" / "elsewhere" / "outside" / "42"


def test_an_unnumbered_clash_never_overwrites(tmp_path):
    opts = _opts(samples_filename_pattern="[seed]", save_images_add_number=False, save_txt=True)
    saver = JobSaver(tmp_path, "txt2img", opts)
    first = saver.save(_image((1, 1, 1)), INFO, _ctx())
    second = saver.save(_image((2, 2, 2)), INFO + "2", _ctx())
    assert (first.name, second.name) == ("42.png", "42-1.png")
    assert Image.open(first).getpixel((0, 0)) == (1, 1, 1) and Image.open(second).getpixel((0, 0)) == (2, 2, 2)
    assert second.with_suffix(".txt").read_text() == INFO + "2\n"
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_formats_carry_the_infotext_and_the_txt_sidecar(tmp_path, fmt):
    text = INFO + ", Note: ünïcødé ✓ 猫"
    opts = _opts(samples_format=fmt, save_txt=True, jpeg_quality=90)
    path = JobSaver(tmp_path, "txt2img", opts).save(_image(), text, _ctx())
    assert path.suffix == f".{fmt}"
    with Image.open(path) as loaded:
        assert loaded.format == {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[fmt]
        assert read_infotext(loaded) == text
    assert path.with_suffix(".txt").read_text(encoding="utf-8") == text + "\n"


def test_webp_lossless_keeps_pixels_exactly(tmp_path):
    noisy = Image.effect_noise((32, 32), 80).convert("RGB")
    path = write_image(noisy, tmp_path, "x", fmt="webp", infotext=INFO, lossless=True)
    assert list(Image.open(path).convert("RGB").getdata()) == list(noisy.getdata())


def test_grid_layout_follows_a1111_rows():
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    images = [_image(c, (10, 10)) for c in colors]
    auto = image_grid(images)  # round(sqrt(3)) = 2 rows, 2 columns, one empty cell
    assert auto.size == (20, 20) and auto.getpixel((15, 15)) == (255, 255, 255)
    assert auto.getpixel((5, 5)) == colors[0] and auto.getpixel((15, 5)) == colors[1]
    assert auto.getpixel((5, 15)) == colors[2]
    assert image_grid(images, prevent_empty=True).size == (30, 10)
    assert image_grid(images, 3, n_rows=0).size == (10, 30)
    assert image_grid(images, n_rows=3).size == (10, 30)
    assert image_grid(images, background="#000000").getpixel((15, 15)) == (0, 0, 0)


def test_grid_saved_for_a_batch_with_the_first_infotext(tmp_path):
    saver = JobSaver(tmp_path, "txt2img", _opts(grid_format="jpg"))
    for i in range(4):
        saver.save(_image((i * 60, 0, 0)), f"{INFO} #{i}", _ctx(seed=42 + i, batch_index=i, batch_size=4))
    grid = saver.save_grid(4)
    assert grid == tmp_path / "txt2img-grids" / "2024-05-17" / "grid-0000.jpg"
    with Image.open(grid) as loaded:
        assert loaded.size == (32, 32) and read_infotext(loaded) == f"{INFO} #0"
    extended = JobSaver(tmp_path, "txt2img", _opts(grid_extended_filename=True))
    extended.save(_image(), INFO, _ctx())
    extended.save(_image(), INFO, _ctx(seed=43))
    assert extended.save_grid(2).name == "grid-0001-42.png"


def test_no_grid_for_one_image_or_when_off(tmp_path):
    single = JobSaver(tmp_path, "txt2img", _opts())
    single.save(_image(), INFO, _ctx())
    assert single.save_grid(1) is None
    off = JobSaver(tmp_path, "txt2img", _opts(grid_save=False))
    off.save(_image(), INFO, _ctx())
    off.save(_image(), INFO, _ctx())
    assert off.save_grid(2) is None
    wanted = JobSaver(tmp_path, "txt2img", _opts(grid_only_if_multiple=False))
    wanted.save(_image(), INFO, _ctx())
    assert wanted.save_grid(1) is not None
    disabled = JobSaver(tmp_path, "txt2img", _opts(), enabled=False)
    assert disabled.save(_image(), INFO, _ctx()) is None and disabled.save(_image(), INFO, _ctx()) is None
    assert disabled.save_grid(2) is None


def test_output_folder_options(tmp_path):
    assert output_folder(tmp_path, _opts(), "img2img", grid=True) == tmp_path / "img2img-grids"
    assert output_folder(tmp_path, _opts(outdir_txt2img_samples="mine/t2i"), "txt2img") == tmp_path / "mine/t2i"
    assert output_folder(tmp_path, _opts(outdir_samples="all", outdir_txt2img_samples="x"), "txt2img") == \
        tmp_path / "all"
    assert output_folder(tmp_path, _opts(outdir_grids="g"), "txt2img", grid=True) == tmp_path / "g"
    assert output_folder(tmp_path, _opts(), "extras") == tmp_path / "extras-images"


def test_extras_save_flat_and_short_as_a1111(tmp_path):
    saver = JobSaver(tmp_path, "extras", _opts(samples_filename_pattern="[seed]"))
    assert saver.save(_image(), "Postprocess upscale by: 2", NameContext()) == tmp_path / "extras-images" / "00000.png"


@pytest.mark.parametrize("key, value", [
    ("samples_format", "bmp"), ("grid_format", "gif"), ("jpeg_quality", 0), ("jpeg_quality", 101),
    ("n_rows", -2), ("grid_background_color", "not a colour"), ("outdir_samples", "/abs/path"),
    ("outdir_txt2img_samples", "C:\\Users"), ("outdir_grids", "../up"), ("outdir_img2img_grids", "a/../../b"),
    ("samples_filename_pattern", 5), ("save_txt", "yes"),
])
def test_options_refuse_bad_saving_values(tmp_path, key, value):
    options = Options(tmp_path / "config.json")
    with pytest.raises(InvalidRequest) as info:
        options.update({key: value})
    assert info.value.field == key
    assert options.get(key) == SAVING_OPTIONS[key]


def test_saving_options_persist_across_restarts(tmp_path):
    Options(tmp_path / "config.json").update({"samples_format": "webp", "samples_filename_pattern": "[seed]-[steps]",
                                              "outdir_txt2img_samples": "t2i", "n_rows": 2})
    again = Options(tmp_path / "config.json")
    assert again.get("samples_format") == "webp" and again.get("samples_filename_pattern") == "[seed]-[steps]"
    assert again.get("outdir_txt2img_samples") == "t2i" and again.get("n_rows") == 2
    overridden = effective_options(again, {"samples_format": "jpg", "sd_vae": "x"})
    assert overridden["samples_format"] == "jpg" and "sd_vae" not in overridden


# ---------------------------------------------------------------- the Settings tab
def test_settings_tab_applies_through_the_options_store_and_persists(tmp_path):
    pytest.importorskip("gradio")
    from webui.ui.settings import apply_settings, current_values, rows

    options = Options(tmp_path / "config.json")
    keys = [row.key for row in rows()]
    values = current_values(options, keys)
    values[keys.index("samples_format")] = "jpg"
    values[keys.index("jpeg_quality")] = 70.0  # gr.Number gives floats
    values[keys.index("save_txt")] = True
    message = apply_settings(options, keys, values)
    assert "3 setting(s) changed" in message
    again = Options(tmp_path / "config.json")
    assert (again.get("samples_format"), again.get("jpeg_quality"), again.get("save_txt")) == ("jpg", 70, True)
    assert apply_settings(again, keys, current_values(again, keys)) == "Nothing changed."
    values = current_values(again, keys)
    values[keys.index("outdir_samples")] = "../../etc"
    message = apply_settings(again, keys, values)
    assert message.startswith("Not saved") and "outdir_samples" in message
    assert Options(tmp_path / "config.json").get("outdir_samples") == ""


def test_settings_tab_builds_a_widget_per_option(tmp_path):
    gr = pytest.importorskip("gradio")
    from webui.ui.settings import build_settings_tab, rows

    class _Services:
        options = Options(None)

    _Services.options.update({"samples_format": "webp"})
    with gr.Blocks():
        tab = build_settings_tab(_Services())
    assert set(tab.widgets) == {row.key for row in rows()} and "samples_filename_pattern" in tab.widgets
    assert tab.widgets["samples_format"].value == "webp"
    assert tab.refresh(_Services())[list(tab.widgets).index("samples_format")] == "webp"


# ---------------------------------------------------------------- the API
def _decode(text):
    return Image.open(io.BytesIO(base64.b64decode(text)))


@pytest.fixture
def api(tmp_path):
    from test_api_support import build_world

    world = build_world(tmp_path)
    yield world
    close = getattr(world.services.queue, "close", None)
    if callable(close):
        close()


def test_api_cannot_change_output_folders_unless_allowed(api):
    for value in ("/tmp/elsewhere", "../../x", "inside"):
        answer = api.client.post("/sdapi/v1/options", json={"outdir_txt2img_samples": value, "save_txt": True})
        assert answer.status_code == 403, answer.text
        assert answer.json()["field"] == "outdir_txt2img_samples" and "--allow-api-outdir" in answer.json()["detail"]
    assert api.services.options.get("outdir_txt2img_samples") == "txt2img-images"
    assert api.services.options.get("save_txt") is False  # nothing changed
    # Posting back the options as they are (what clients do) is fine.
    current = api.client.get("/sdapi/v1/options").json()
    assert api.client.post("/sdapi/v1/options", json={**current, "samples_format": "jpg"}).status_code == 200
    job = api.client.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 16, "height": 16,
                                                     "override_settings": {"outdir_samples": "../../x"}})
    assert job.status_code == 403 and job.json()["field"] == "override_settings.outdir_samples"


def test_api_may_change_output_folders_when_allowed_but_only_inside(tmp_path):
    from test_api_support import build_world

    world = build_world(tmp_path, allow_api_outdir=True)
    assert world.client.post("/sdapi/v1/options", json={"outdir_txt2img_samples": "mine"}).status_code == 200
    assert world.services.options.get("outdir_txt2img_samples") == "mine"
    answer = world.client.post("/sdapi/v1/options", json={"outdir_txt2img_samples": "/tmp/elsewhere"})
    assert answer.status_code == 422 and answer.json()["field"] == "outdir_txt2img_samples"
    job = world.client.post("/sdapi/v1/txt2img", json={"prompt": "x", "override_settings": {"outdir_samples": "../x"}})
    assert job.status_code == 422 and job.json()["field"] == "override_settings.outdir_samples"


def test_api_images_follow_samples_format_and_png_info_reads_them(api):
    body = {"prompt": "a red square", "seed": 7, "steps": 3, "width": 16, "height": 16,
            "override_settings": {"samples_format": "jpg", "samples_filename_pattern": "[seed]"}}
    answer = api.client.post("/sdapi/v1/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    image = answer.json()["images"][0]
    assert _decode(image).format == "JPEG"
    kind, request = api.engine.requests[-1]
    assert request.override_settings == {"samples_format": "jpg", "samples_filename_pattern": "[seed]"}
    info = api.client.post("/sdapi/v1/png-info", json={"image": image}).json()
    assert info["info"].startswith("a red square") and str(info["parameters"]["Seed"]) == "7"

    assert api.client.post("/sdapi/v1/options", json={"samples_format": "webp"}).status_code == 200
    webp = api.client.post("/sdapi/v1/txt2img", json={"prompt": "b", "seed": 8, "width": 16, "height": 16}).json()
    assert _decode(webp["images"][0]).format == "WEBP"
    info = api.client.post("/sdapi/v1/png-info", json={"image": webp["images"][0]}).json()
    assert str(info["parameters"]["Seed"]) == "8"
    bad = api.client.post("/sdapi/v1/txt2img", json={"prompt": "x", "override_settings": {"samples_format": "bmp"}})
    assert bad.status_code == 422 and bad.json()["field"] == "override_settings.samples_format"


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_png_info_endpoint_reads_saved_jpeg_and_webp_files(api, tmp_path, fmt):
    path = write_image(_image(), tmp_path / "saved", "x", fmt=fmt, infotext=INFO)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    answer = api.client.post("/sdapi/v1/png-info", json={"image": data}).json()
    assert answer["info"] == INFO and str(answer["parameters"]["Steps"]) == "3"


# ---------------------------------------------------------------- the real engine
def test_engine_saves_a_batch_with_patterns_format_sidecars_and_grid(settings):
    from webui.catalog import Catalog
    from webui.engine.engine import Engine
    from webui.models.manager import ModelManager
    from webui.schemas import GenerationRequest

    catalog = Catalog(settings)
    catalog.refresh()
    options = Options(None)
    options.update({"save_txt": True, "directories_filename_pattern": "[model_name]"})
    engine = Engine(settings, catalog, ModelManager(settings, catalog), options=options)
    request = GenerationRequest(prompt="a red circle", steps=2, width=64, height=64, seed=42, batch_size=2,
                                sampler_name="Euler", override_settings={
                                    "samples_format": "webp", "samples_filename_pattern": "[seed]-[batch_number]"})
    result = engine.generate(request)
    folder = settings.outdir / "txt2img-images" / "tiny-sd1"
    assert [Path(p) for p in result.saved_paths] == [folder / "00000-42-1.webp", folder / "00001-43-2.webp"]
    for path, text in zip(result.saved_paths, result.infotexts):
        assert read_infotext(Image.open(path)) == text and "Seed: " in text
        assert Path(path).with_suffix(".txt").read_text(encoding="utf-8") == text + "\n"
    [grid] = (settings.outdir / "txt2img-grids" / "tiny-sd1").glob("grid-*.png")
    with Image.open(grid) as loaded:
        assert grid.name == "grid-0000.png" and loaded.size == (128, 64)
        assert read_infotext(loaded) == result.infotexts[0]
    assert options.get("samples_format") == "png"  # the override was for that job only


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_png_info_tab_reads_every_format_saved(tmp_path, fmt):
    pytest.importorskip("gradio")
    from webui.ui.pnginfo import read_parameters

    path = write_image(_image(), tmp_path, "x", fmt=fmt, infotext=INFO)
    assert read_parameters(str(path)) == INFO
