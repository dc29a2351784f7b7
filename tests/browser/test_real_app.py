"""The same user flows against ``python app.py`` with the real engine on the shipped demo checkpoint.

Images are 64x64 with 2-3 steps so each generation takes a few seconds on CPU.
"""
from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from tests.browser import ui


def _small_settings(page, tab: str, width: int = 64, height: int = 64, steps: int = 2) -> None:
    ui.set_number(page, f"{tab}_steps", steps)
    ui.set_number(page, f"{tab}_width", width)
    ui.set_number(page, f"{tab}_height", height)


def test_real_checkpoint_switch_is_named_in_the_next_infotext(real_page):
    page = real_page
    titles = ui.dropdown_options(page, "setting_sd_model_checkpoint")
    assert {"demo-shapes.safetensors", "demo-second.safetensors"} <= {t.split(" [")[0] for t in titles}
    ui.choose(page, "setting_sd_model_checkpoint", "demo-second.safetensors")
    page.wait_for_function("() => document.querySelector('#topbar_message').innerText.includes('Loaded demo-second')",
                           timeout=60_000)
    ui.fill_text(page, "txt2img_prompt", "a blue circle")
    _small_settings(page, "txt2img")
    assert "Done" in ui.generate(page, "txt2img")
    assert "Model: demo-second" in ui.textbox_value(page, "txt2img_infotext")


def test_real_txt2img_saves_png_with_infotext_and_png_info_reads_it(real_page, real_app):
    page = real_page
    ui.fill_text(page, "txt2img_prompt", "a red square")
    _small_settings(page, "txt2img", steps=3)
    ui.set_number(page, "txt2img_seed", 4321)
    status = ui.generate(page, "txt2img")
    assert "Done" in status and "memory: all weights in RAM (CPU)" in status  # the job's memory plan, shown
    [image] = ui.gallery_images(page, "txt2img")
    assert image.size == (64, 64)
    infotext = ui.textbox_value(page, "txt2img_infotext")
    assert "Seed: 4321" in infotext and infotext.startswith("a red square")
    [saved] = sorted((real_app.outdir / "txt2img-images").rglob("*-4321.png"))
    with Image.open(saved) as png:
        assert png.info.get("parameters") == infotext
    ui.open_tab(page, "pnginfo")
    ui.drop_file(page, "#pnginfo_image button[aria-dropeffect]", saved)
    page.wait_for_function("() => document.querySelector('#pnginfo_parameters textarea').value.includes('Seed: 4321')")
    assert ui.textbox_value(page, "pnginfo_parameters") == infotext


def test_real_img2img_drop_gives_the_chosen_size(real_page, tmp_path):
    page = real_page
    path = tmp_path / "init.png"
    Image.new("RGB", (64, 80), (200, 40, 40)).save(path)
    ui.open_tab(page, "img2img")
    ui.drop_file(page, "#img2img_image button[aria-dropeffect]", path)
    page.wait_for_selector("#img2img_image img")
    # The dropped image's size becomes the tab's size; then the user picks another.
    page.wait_for_function("() => document.querySelector('#img2img_height input[type=number]').value === '80'")
    ui.fill_text(page, "img2img_prompt", "a red square")
    _small_settings(page, "img2img", width=64, height=96)
    assert "Done" in ui.generate(page, "img2img")
    assert [im.size for im in ui.gallery_images(page, "img2img")] == [(64, 96)]


def test_real_inpaint_keeps_pixels_far_from_the_stroke(real_page, tmp_path):
    page = real_page
    original = (30, 160, 220)
    path = tmp_path / "inpaint.png"
    Image.new("RGB", (128, 128), original).save(path)
    ui.open_tab(page, "inpaint")
    ui.upload_to_editor(page, "inpaint", "inpaint_editor", path)
    canvas = page.locator("#inpaint_editor canvas").first
    canvas.wait_for()
    time.sleep(1.0)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(centre_x - 60, centre_y - 60)
    page.mouse.down()
    page.mouse.move(centre_x - 20, centre_y - 40, steps=10)
    page.mouse.up()
    ui.fill_text(page, "inpaint_prompt", "a green triangle")
    _small_settings(page, "inpaint", width=128, height=128)
    ui.set_number(page, "inpaint_mask_blur", 0)
    assert "Done" in ui.generate(page, "inpaint")
    [result] = ui.gallery_images(page, "inpaint")
    assert result.size == (128, 128)
    for corner in ((124, 124), (3, 124), (124, 3)):
        assert result.getpixel(corner) == original, corner


def test_real_extras_lanczos_x2(real_page, tmp_path):
    page = real_page
    path = tmp_path / "small.png"
    Image.new("RGB", (40, 30), (10, 200, 90)).save(path)
    ui.open_tab(page, "extras")
    ui.upload_file(page, "extras_image", path)
    page.wait_for_selector("#extras_image img")
    ui.choose(page, "extras_upscaler_1", "Lanczos")
    ui.set_number(page, "extras_upscaling_resize", 2)
    assert "Done" in ui.generate(page, "extras")
    assert [im.size for im in ui.gallery_images(page, "extras")] == [(80, 60)]


def test_real_removed_checkpoint_reads_well_and_page_keeps_working(real_page, real_app):
    page = real_page
    doomed: Path = real_app.models_dir / "Stable-diffusion" / "zz-removed.safetensors"
    assert "zz-removed.safetensors" in " ".join(ui.dropdown_options(page, "setting_sd_model_checkpoint"))
    doomed.unlink()
    ui.choose(page, "setting_sd_model_checkpoint", "zz-removed.safetensors")
    page.wait_for_function("() => document.querySelector('#topbar_message').innerText.includes('Could not load')",
                           timeout=60_000)
    message = ui.text_of(page, "topbar_message")
    assert "zz-removed" in message and "Traceback" not in message
    ui.choose(page, "setting_sd_model_checkpoint", "demo-shapes.safetensors")
    page.wait_for_function("() => document.querySelector('#topbar_message').innerText.includes('Loaded demo-shapes')",
                           timeout=60_000)
    ui.fill_text(page, "txt2img_prompt", "still working")
    _small_settings(page, "txt2img")
    assert "Done" in ui.generate(page, "txt2img")


def test_real_hires_fix_doubles_the_size_and_records_it(real_page):
    page = real_page
    ui.fill_text(page, "txt2img_prompt", "a yellow square")
    _small_settings(page, "txt2img")
    page.click("#txt2img_hr")
    page.locator("#txt2img_enable_hr input[type=checkbox]").check()
    ui.set_number(page, "txt2img_hr_scale", 2)
    ui.set_number(page, "txt2img_hires_steps", 2)
    assert "Done" in ui.generate(page, "txt2img")
    assert [im.size for im in ui.gallery_images(page, "txt2img")] == [(128, 128)]
    assert "Hires upscale: 2" in ui.textbox_value(page, "txt2img_infotext")


def test_real_xyz_plot_from_the_script_dropdown_gives_a_grid_with_legends(real_page):
    page = real_page
    ui.fill_text(page, "txt2img_prompt", "a green triangle")
    _small_settings(page, "txt2img")
    ui.choose(page, "txt2img_script", "X/Y/Z plot")
    page.wait_for_selector("#txt2img_script_xyz_plot_x_values", state="visible")
    ui.choose(page, "txt2img_script_xyz_plot_x_type", "Steps")
    ui.fill_text(page, "txt2img_script_xyz_plot_x_values", "1-2")
    assert "Done" in ui.generate(page, "txt2img")
    [grid] = ui.gallery_images(page, "txt2img")
    assert grid.width == 128 and grid.height > 64  # two 64 px cells side by side under their labels
    assert "Script: X/Y/Z plot, X Type: Steps, X Values: 1-2" in ui.textbox_value(page, "txt2img_infotext")
    ui.choose(page, "txt2img_script", "None")
