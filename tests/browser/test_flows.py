"""What a user does in the browser, against the real UI and queue over a fake engine.

Each flow ends in something a user would check: the image is there, has the size
asked for, carries its parameters, the queue shows the jobs, errors read well.
"""
from __future__ import annotations

import time
from pathlib import Path


from PIL import Image, PngImagePlugin

from tests.browser import ui


def test_checkpoint_dropdown_lists_checkpoints_and_switches_model(page, fake_app):
    options = ui.dropdown_options(page, "setting_sd_model_checkpoint")
    names = [o.split(" [")[0] for o in options]
    assert {"tiny-a.ckpt", "tiny-b.ckpt"} <= set(names)
    ui.choose(page, "setting_sd_model_checkpoint", "tiny-b.ckpt")
    page.wait_for_function("() => document.querySelector('#topbar_message').innerText.includes('Loaded tiny-b.ckpt')")
    ui.fill_text(page, "txt2img_prompt", "switch check")
    ui.set_number(page, "txt2img_steps", 2)
    assert "Done" in ui.generate(page, "txt2img")
    assert "Model: tiny-b" in ui.textbox_value(page, "txt2img_infotext")


def test_txt2img_shows_image_with_seed_and_saves_png(page, fake_app):
    ui.fill_text(page, "txt2img_prompt", "a red square on grass")
    ui.set_number(page, "txt2img_steps", 3)
    ui.set_number(page, "txt2img_width", 64)
    ui.set_number(page, "txt2img_height", 80)
    ui.set_number(page, "txt2img_seed", 1234)
    assert "Done" in ui.generate(page, "txt2img")
    images = ui.gallery_images(page, "txt2img")
    assert [im.size for im in images] == [(64, 80)]
    infotext = ui.textbox_value(page, "txt2img_infotext")
    assert "Seed: 1234" in infotext and "a red square on grass" in infotext
    saved = sorted((fake_app.outdir / "txt2img-images").rglob("*-1234.png"))
    assert saved, "no PNG saved under outputs/txt2img-images"
    with Image.open(saved[-1]) as png:
        assert png.info.get("parameters") == infotext
    # Reuse brings back the seed of the shown image, Random sets it back to -1.
    ui.set_number(page, "txt2img_seed", 5)
    page.click("#txt2img_reuse_seed")
    page.wait_for_function("() => document.querySelector('#txt2img_seed input').value === '1234'")
    page.click("#txt2img_random_seed")
    page.wait_for_function("() => document.querySelector('#txt2img_seed input').value === '-1'")


def test_progress_is_visible_while_a_job_runs(page, fake_app):
    ui.fill_text(page, "txt2img_prompt", "slow progress")
    ui.set_number(page, "txt2img_steps", 6)
    ui.set_number(page, "txt2img_width", 64)
    ui.set_number(page, "txt2img_height", 64)
    page.click("#txt2img_generate")
    line = ui.wait_status(page, "txt2img", "step 2/6", "step 3/6", "step 4/6")
    assert "image 1/1" in line
    page.wait_for_selector("#txt2img_preview img")  # the live preview shows while it runs
    assert "Done" in ui.wait_status(page, "txt2img", "Done", "Error")


def _sample_png(path: Path, size=(80, 64), colour=(30, 160, 220)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def test_img2img_drag_and_drop_gives_the_chosen_size(page, fake_app, tmp_path):
    ui.open_tab(page, "img2img")
    ui.drop_file(page, "#img2img_image button[aria-dropeffect]", _sample_png(tmp_path / "dropped.png"))
    page.wait_for_selector("#img2img_image img")
    # The dropped image's size becomes the tab's size; then the user picks another.
    page.wait_for_function("() => document.querySelector('#img2img_width input[type=number]').value === '80'"
                           " && document.querySelector('#img2img_height input[type=number]').value === '64'")
    page.wait_for_function("() => document.querySelector('#img2img_resize_readout').innerText"
                           ".includes('Resize: from 80x64 to 80x64')")
    # A1111's "Resize by": the image's size times the factor, and the readout says so.
    ui.set_number(page, "img2img_scale_by", 2)
    page.wait_for_function("() => document.querySelector('#img2img_width input[type=number]').value === '160'"
                           " && document.querySelector('#img2img_height input[type=number]').value === '128'")
    page.wait_for_function("() => document.querySelector('#img2img_resize_readout').innerText"
                           ".includes('Resize: from 80x64 to 160x128')")
    ui.fill_text(page, "img2img_prompt", "dropped")
    ui.set_number(page, "img2img_steps", 2)
    ui.set_number(page, "img2img_width", 64)
    ui.set_number(page, "img2img_height", 96)
    assert "Done" in ui.generate(page, "img2img")
    assert [im.size for im in ui.gallery_images(page, "img2img")] == [(64, 96)]
    assert list((fake_app.outdir / "img2img-images").rglob("*.png"))


def test_img2img_upload_gives_the_chosen_size(page, fake_app, tmp_path):
    ui.open_tab(page, "img2img")
    ui.upload_file(page, "img2img_image", _sample_png(tmp_path / "uploaded.png"))
    page.wait_for_selector("#img2img_image img")
    ui.set_number(page, "img2img_steps", 2)
    ui.set_number(page, "img2img_width", 72)
    ui.set_number(page, "img2img_height", 88)
    assert "Done" in ui.generate(page, "img2img")
    assert [im.size for im in ui.gallery_images(page, "img2img")] == [(72, 88)]


def test_img2img_without_image_says_so(page, fake_app):
    ui.open_tab(page, "img2img")
    status = ui.generate(page, "img2img")
    assert "upload an image first" in status and "Traceback" not in status


def test_inpaint_brush_stroke_changes_only_the_painted_area(page, fake_app, tmp_path):
    original = (30, 160, 220)
    ui.open_tab(page, "inpaint")
    picture = _sample_png(tmp_path / "inpaint.png", size=(256, 256), colour=original)
    ui.upload_to_editor(page, "inpaint", "inpaint_editor", picture)
    canvas = page.locator("#inpaint_editor canvas").first
    canvas.wait_for()
    # A labelled brush size, starting at the editor's own; a smaller brush keeps the picture in the editor.
    assert "Brush size" in ui.text_of(page, "inpaint_brush_size")
    assert page.locator("#inpaint_brush_size input[type=number]").input_value() == "25"
    ui.set_number(page, "inpaint_brush_size", 12)
    time.sleep(1.0)  # the editor fits the picture to the canvas after loading it
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    # The brush is the editor's default tool: a short stroke up and left of the picture's centre.
    page.mouse.move(centre_x - 60, centre_y - 60)
    page.mouse.down()
    page.mouse.move(centre_x - 20, centre_y - 40, steps=10)
    page.mouse.up()
    ui.set_number(page, "inpaint_steps", 2)
    ui.set_number(page, "inpaint_width", 256)
    ui.set_number(page, "inpaint_height", 256)
    ui.set_number(page, "inpaint_mask_blur", 0)
    assert "Done" in ui.generate(page, "inpaint")
    [result] = ui.gallery_images(page, "inpaint")
    assert result.size == (256, 256)
    assert result.getpixel((240, 240)) == original  # far from the stroke: unchanged
    assert result.getpixel((5, 250)) == original
    changed = sum(1 for x in range(0, 256, 4) for y in range(0, 256, 4) if result.getpixel((x, y)) != original)
    assert changed > 0, "the painted stroke changed nothing"


def test_extras_lanczos_x2_doubles_the_size(page, fake_app, tmp_path):
    ui.open_tab(page, "extras")
    ui.upload_file(page, "extras_image", _sample_png(tmp_path / "small.png", size=(40, 30)))
    page.wait_for_selector("#extras_image img")
    ui.choose(page, "extras_upscaler_1", "Lanczos")
    ui.set_number(page, "extras_upscaling_resize", 2)
    assert "Done" in ui.generate(page, "extras")
    assert [im.size for im in ui.gallery_images(page, "extras")] == [(80, 60)]
    assert list((fake_app.outdir / "extras-images").rglob("*.png"))


def test_send_to_img2img_carries_the_image(page, fake_app):
    ui.fill_text(page, "txt2img_prompt", "send me")
    ui.set_number(page, "txt2img_steps", 2)
    ui.set_number(page, "txt2img_width", 64)
    ui.set_number(page, "txt2img_height", 72)
    ui.set_number(page, "txt2img_seed", 77)
    assert "Done" in ui.generate(page, "txt2img")
    [made] = ui.gallery_images(page, "txt2img")
    page.click("#txt2img_send_to_img2img")
    page.wait_for_selector("#tab_img2img", state="visible")
    assert ui.image_natural_size(page, "#img2img_image img") == (64, 72)
    src = page.eval_on_selector("#img2img_image img", "e => e.src")
    carried = Image.open(__import__("io").BytesIO(page.request.get(src).body())).convert("RGB")
    assert carried.getpixel((10, 10)) == made.getpixel((10, 10))
    assert ui.textbox_value(page, "img2img_prompt") == "send me"


def test_queue_shows_both_jobs_interrupt_first_second_completes(fake_app, new_page):
    first, second = new_page(fake_app.url), new_page(fake_app.url)
    # The fake engine holds a "hold" job at its last step until it is interrupted: it is still running after the
    # queue tab and the other user's clicks however slow the machine is.
    ui.fill_text(first, "txt2img_prompt", "hold first job")
    ui.set_number(first, "txt2img_steps", 5)
    first.click("#txt2img_generate")
    ui.wait_status(first, "txt2img", "running")
    ui.fill_text(second, "txt2img_prompt", "second job")
    ui.set_number(second, "txt2img_steps", 2)
    second.click("#txt2img_generate")
    ui.wait_status(second, "txt2img", "queued (position 1)")
    ui.open_tab(first, "queue")
    # Jobs are private: the queue shows one's own job, and other users' work only as a count.
    first.wait_for_function(
        "() => { const t = document.querySelector('#queue_table'); return t && t.innerText.includes('hold first job')"
        " && t.innerText.includes('1 job(s) of other users'); }")
    assert "second job" not in ui.text_of(first, "queue_table")
    # Another user's Interrupt never stops this job.
    second.click("#txt2img_interrupt")
    assert "Nothing of yours is running" in ui.wait_status(second, "txt2img", "Nothing of yours")
    ui.open_tab(first, "txt2img")
    assert "running" in ui.status_text(first, "txt2img")
    first.click("#txt2img_interrupt")
    assert "Interrupted" in ui.wait_status(first, "txt2img", "Interrupted", "Done", "Error")
    assert "Done" in ui.wait_status(second, "txt2img", "Done", "Error")
    assert len(ui.gallery_images(second, "txt2img")) == 1


def test_removed_checkpoint_gives_a_readable_message_and_page_keeps_working(page, fake_app):
    doomed = fake_app.models_dir / "Stable-diffusion" / "zz-removed.ckpt"
    assert "zz-removed.ckpt" in " ".join(ui.dropdown_options(page, "setting_sd_model_checkpoint"))
    doomed.unlink()
    ui.choose(page, "setting_sd_model_checkpoint", "zz-removed.ckpt")
    page.wait_for_function("() => document.querySelector('#topbar_message').innerText.includes('Could not load')")
    message = ui.text_of(page, "topbar_message")
    assert "zz-removed.ckpt" in message and "Traceback" not in message
    # Generating with the vanished file fails as a message too; then a good checkpoint works again.
    ui.fill_text(page, "txt2img_prompt", "after the error")
    ui.set_number(page, "txt2img_steps", 2)
    status = ui.generate(page, "txt2img")
    assert "Error" in status and "zz-removed.ckpt" in status and "Traceback" not in status
    ui.choose(page, "setting_sd_model_checkpoint", "tiny-a.ckpt")
    page.wait_for_function("() => document.querySelector('#topbar_message').innerText.includes('Loaded tiny-a.ckpt')")
    assert "Done" in ui.generate(page, "txt2img")


def test_png_info_shows_parameters_and_sends_them_to_txt2img(page, fake_app, tmp_path):
    text = "a lighthouse at dusk\nNegative prompt: fog\nSteps: 7, Sampler: Euler, CFG scale: 5, Seed: 4242, Size: 64x64"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    path = tmp_path / "made.png"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(path, pnginfo=info)
    ui.open_tab(page, "pnginfo")
    ui.drop_file(page, "#pnginfo_image button[aria-dropeffect]", path)
    page.wait_for_function("() => document.querySelector('#pnginfo_parameters textarea').value.includes('Seed: 4242')")
    assert "a lighthouse at dusk" in ui.textbox_value(page, "pnginfo_parameters")
    page.click("#pnginfo_send_to_txt2img")
    page.wait_for_selector("#tab_txt2img", state="visible")
    page.wait_for_function("() => document.querySelector('#txt2img_prompt textarea').value === 'a lighthouse at dusk'")
    assert ui.textbox_value(page, "txt2img_neg_prompt") == "fog"
    assert page.locator("#txt2img_seed input").input_value() == "4242"
    assert page.locator("#txt2img_steps input[type=number]").input_value() == "7"


def test_network_cards_insert_at_the_cursor(page, fake_app):
    page.click("#txt2img_networks")
    box = page.locator("#txt2img_prompt textarea")
    box.fill("a cat on a mat")
    box.evaluate("b => b.setSelectionRange(5, 5)")  # the cursor after "a cat"
    page.fill("#txt2img_network_weight", "0.8")
    page.locator("#txt2img_network_cards .network-card[data-kind=lora]", has_text="demo-outline").first.click()
    page.wait_for_function("() => document.querySelector('#txt2img_prompt textarea').value"
                           " === 'a cat, <lora:demo-outline:0.8> on a mat'")
    box.evaluate("b => b.setSelectionRange(b.value.length, b.value.length)")
    page.locator("#txt2img_network_cards .network-card[data-kind=wildcard]", has_text="animal").first.click()
    page.wait_for_function("() => document.querySelector('#txt2img_prompt textarea').value.endsWith('mat, __animal__')")
    page.fill("#txt2img_network_search", "zz-removed")  # search hides the cards whose name does not match
    assert page.locator("#txt2img_network_cards .network-card[data-kind=lora]").first.is_hidden()
    page.fill("#txt2img_network_search", "")
    page.locator("#txt2img_network_cards .network-card[data-kind=lora] .card-meta").first.click()
    page.wait_for_function("() => (document.querySelector('#txt2img_lora_metadata')?.innerText || '')"
                           ".includes('ss_network_module')")
    assert "Bright" in ui.dropdown_options(page, "txt2img_styles")


def test_queue_panel_reopens_a_finished_jobs_gallery(page, fake_app):
    ui.fill_text(page, "txt2img_prompt", "reopen me later")
    ui.set_number(page, "txt2img_steps", 2)
    ui.set_number(page, "txt2img_width", 96)
    ui.set_number(page, "txt2img_height", 64)
    assert "Done" in ui.generate(page, "txt2img")
    ui.open_tab(page, "queue")
    page.wait_for_function("() => document.querySelector('#queue_table').innerText.includes('reopen me later')")
    ui.choose(page, "queue_finished_jobs", "reopen me later")
    page.click("#queue_open")
    page.wait_for_function("() => document.querySelector('#queue_message').innerText.includes('succeeded')")
    assert [im.size for im in ui.gallery_images(page, "queue")] == [(96, 64)]
    assert "reopen me later" in ui.textbox_value(page, "queue_infotext")


def test_send_to_inpaint_and_extras_carry_the_image(page, fake_app):
    ui.fill_text(page, "txt2img_prompt", "carry me")
    ui.set_number(page, "txt2img_steps", 2)
    ui.set_number(page, "txt2img_width", 96)
    ui.set_number(page, "txt2img_height", 64)
    assert "Done" in ui.generate(page, "txt2img")
    page.click("#txt2img_send_to_inpaint")
    page.wait_for_selector("#tab_inpaint", state="visible")
    page.wait_for_selector("#inpaint_editor canvas")
    assert ui.textbox_value(page, "inpaint_prompt") == "carry me"
    assert page.locator("#inpaint_width input[type=number]").input_value() == "96"
    # The brush is sized to the picture sent (1/20 of its longer side, at least 2 px).
    assert page.locator("#inpaint_brush_size input[type=number]").input_value() == "5"
    ui.open_tab(page, "txt2img")
    page.click("#txt2img_send_to_extras")
    page.wait_for_selector("#tab_extras", state="visible")
    assert ui.image_natural_size(page, "#extras_image img") == (96, 64)


def test_extras_batch_from_a_folder_inside_outputs(page, fake_app):
    folder = fake_app.outdir / "to-upscale"
    folder.mkdir(parents=True, exist_ok=True)
    for number, size in enumerate(((20, 10), (30, 16))):
        Image.new("RGB", size, (number * 90, 50, 50)).save(folder / f"{number}.png")
    ui.open_tab(page, "extras")
    page.click("button[role=tab]#extras_dir_tab-button")
    ui.fill_text(page, "extras_batch_input_dir", str(folder))
    ui.choose(page, "extras_upscaler_1", "Lanczos")
    ui.set_number(page, "extras_upscaling_resize", 2)
    assert "Done: 2 image(s)" in ui.generate(page, "extras")
    assert sorted(im.size for im in ui.gallery_images(page, "extras")) == [(40, 20), (60, 32)]
    # A folder outside the outputs is refused with a message, not read.
    ui.fill_text(page, "extras_batch_input_dir", "/etc")
    status = ui.generate(page, "extras")
    assert "must be inside" in status


def test_skip_drops_the_current_image_of_a_batch(page, fake_app):
    ui.fill_text(page, "txt2img_prompt", "slow batch")
    ui.set_number(page, "txt2img_steps", 5)
    ui.set_number(page, "txt2img_width", 64)
    ui.set_number(page, "txt2img_height", 64)
    ui.set_number(page, "txt2img_batch_count", 3)
    page.click("#txt2img_generate")
    ui.wait_status(page, "txt2img", "image 1/3, step 1/5", "image 1/3, step 2/5")
    page.click("#txt2img_skip")
    line = ui.wait_status(page, "txt2img", "Done", "Error", "Interrupted")
    assert line.startswith("Done: 2 image(s)")
    assert len(ui.gallery_images(page, "txt2img")) == 2
