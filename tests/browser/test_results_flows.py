"""Results, shortcuts, progress and taking jobs back, as a user at 1440x900 (and on a phone) meets them."""
from __future__ import annotations

import json
import re


from tests.browser import ui

# The image's drawn content (after object-fit), the gallery's visible box, and whether it is drawn pixelated.
RENDERED = """sel => {
    const img = document.querySelector(sel);
    const box = img.getBoundingClientRect();
    const frame = img.closest('.webui-gallery').getBoundingClientRect();
    const fit = getComputedStyle(img).objectFit;
    let w = box.width, h = box.height;
    if (fit === 'contain') {
        const scale = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight);
        w = img.naturalWidth * scale; h = img.naturalHeight * scale;
    }
    const left = box.left + (box.width - w) / 2, top = box.top + (box.height - h) / 2;
    return {w, h, left, top, right: left + w, bottom: top + h, fit, rendering: getComputedStyle(img).imageRendering,
            frame: {left: frame.left, top: frame.top, right: frame.right, bottom: frame.bottom}};
}"""


def _in_viewport(page, selector: str) -> bool:
    return page.eval_on_selector(
        selector, "e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }")


def test_ctrl_up_weights_words_ctrl_enter_generates_and_the_whole_image_shows(page, fake_app):
    page.set_viewport_size({"width": 1440, "height": 900})
    box = page.locator("#txt2img_prompt textarea")
    box.fill("a red cat")
    box.evaluate("b => b.setSelectionRange(2, 5)")  # "red"
    box.press("Control+ArrowUp")
    assert box.input_value() == "a (red:1.1) cat"
    box.press("Control+ArrowUp")
    assert box.input_value() == "a (red:1.2) cat"
    box.press("Control+ArrowDown")
    box.press("Control+ArrowDown")
    assert box.input_value() == "a red cat", "at 1.0 the parentheses go"
    box.evaluate("b => b.setSelectionRange(4, 4)")  # the cursor in "red", nothing selected
    box.press("Control+ArrowDown")
    assert box.input_value() == "a (red:0.9) cat"
    cases = page.evaluate("""() => [
        webuiEditWeight('<lora:demo:0.8>', 3, 3, true).text,
        webuiEditWeight('x (blue sky:1.25) y', 3, 11, true).text,
        webuiEditWeight('x (blue sky:1.25) y', 5, 5, false).text,
    ]""")
    assert cases == ["<lora:demo:0.85>", "x (blue sky:1.35) y", "x (blue sky:1.15) y"]
    assert "Ctrl+Up" in box.get_attribute("title")
    assert "Ctrl+Enter" in page.get_attribute("#txt2img_generate", "title")

    ui.set_number(page, "txt2img_steps", 2)
    ui.set_number(page, "txt2img_width", 64)
    ui.set_number(page, "txt2img_height", 96)
    ui.set_number(page, "txt2img_batch_size", 4)
    box.press("Control+Enter")
    line = ui.wait_status(page, "txt2img", "Done", "Error")
    assert line.startswith("Done: 4 image(s)")
    assert box.input_value() == "a (red:0.9) cat", "Ctrl+Enter adds no newline"
    page.wait_for_function("() => document.querySelector('#txt2img_interrupt').offsetParent === null")
    assert page.is_visible("#txt2img_generate"), "idle: Generate alone, Interrupt and Skip hidden"
    assert "a (red:0.9) cat" in ui.textbox_value(page, "txt2img_infotext")

    # The large image: the image's own aspect, inside the gallery, drawn without smoothing (64 px shown larger).
    large = "#txt2img_gallery img:not(.thumbnail-item img)"
    page.wait_for_function("s => { const i = document.querySelector(s); return i && i.naturalWidth > 0; }", arg=large)
    page.wait_for_function("s => getComputedStyle(document.querySelector(s)).imageRendering === 'pixelated'", arg=large)
    shown = page.evaluate(RENDERED, large)
    assert abs(shown["w"] / shown["h"] - 64 / 96) < 0.02, shown
    assert shown["h"] > 150, "the image is shown large"
    frame = shown["frame"]
    assert frame["left"] - 1 <= shown["left"] and shown["right"] <= frame["right"] + 1, shown
    assert frame["top"] - 1 <= shown["top"] and shown["bottom"] <= frame["bottom"] + 1, shown
    # All four images reachable, arrow keys step through them.
    assert len(page.query_selector_all("#txt2img_gallery .thumbnail-item")) >= 4
    first_src = page.get_attribute(large, "src")
    page.click(large, position={"x": 5, "y": 5})  # focus; a click on the left half steps back (wraps to #4)
    page.keyboard.press("ArrowRight")
    page.wait_for_function("([s, src]) => document.querySelector(s).src === src", arg=[large, first_src])
    page.keyboard.press("ArrowRight")
    page.wait_for_function("([s, src]) => document.querySelector(s).src !== src", arg=[large, first_src])
    # Parameters and Send-to buttons on screen without scrolling.
    page.evaluate("() => window.scrollTo(0, 0)")
    assert _in_viewport(page, "#txt2img_send_to_img2img")
    assert page.eval_on_selector("#txt2img_infotext textarea", "e => e.getBoundingClientRect().top < innerHeight - 20")

    # A phone: the result comes right under Generate, before the parameters.
    page.set_viewport_size({"width": 390, "height": 844})
    tops = page.evaluate("""() => ['txt2img_generate', 'txt2img_results', 'txt2img_settings'].map(
        id => document.getElementById(id).getBoundingClientRect().top)""")
    assert tops[0] < tops[1] < tops[2], tops


def test_a_reloaded_page_and_a_second_tab_take_the_job_back_and_interrupt_keeps_the_image(page, fake_app):
    page.request.post(fake_app.url + "sdapi/v1/options", data=json.dumps({"notification_audio": True}),
                      headers={"Content-Type": "application/json"})
    try:
        ui.fill_text(page, "txt2img_prompt", "slow reload me")
        ui.set_number(page, "txt2img_steps", 150)
        ui.set_number(page, "txt2img_width", 64)
        ui.set_number(page, "txt2img_height", 64)
        ui.set_number(page, "txt2img_batch_count", 3)  # up to 3 minutes: time for a slow machine to reload
        page.click("#txt2img_generate")
        ui.wait_status(page, "txt2img", "step 2/150", "step 3/150")
        page.reload()
        page.wait_for_selector("#txt2img_generate", state="attached")
        ui.wait_status(page, "txt2img", "running")
        # Progress: bar, percent, step and an ETA from the measured step time (0.4 s a step in the fake engine).
        text = page.wait_for_function("""() => { const t = document.querySelector('#txt2img_progress').innerText;
            return /ETA (\\d+m )?\\d+s/.test(t) && t; }""").json_value()
        image, step = map(int, re.search(r"image (\d+)/3 · step (\d+)/150", text).groups())
        left = 3 * 150 - (image - 1) * 150 - step
        minutes, seconds = re.search(r"ETA (?:(\d+)m )?(\d+)s", text).groups()
        eta = int(minutes or 0) * 60 + int(seconds)
        # Not the first step's time (model load, warm-up) times the steps: about the steps left times 0.4 s.
        assert 0.9 * left * 0.4 - 1 <= eta <= 3 * left * 0.4, text
        assert re.search(r"\d+%", text) and page.is_visible("#txt2img_progress progress")
        page.wait_for_function("() => /^\\[\\d+%\\] /.test(document.title)")
        page.wait_for_selector("#txt2img_preview img")
        # A second tab of the same browser follows the same job.
        second = page.context.new_page()
        second.goto(fake_app.url)
        second.wait_for_selector("#txt2img_status", state="attached", timeout=90_000)  # a whole page on a busy CPU
        ui.wait_status(second, "txt2img", "running", timeout=120_000)
        # Generate has given its place to Interrupt and Skip; Esc interrupts.
        assert not page.is_visible("#txt2img_generate") and page.is_visible("#txt2img_interrupt")
        page.keyboard.press("Escape")
        line = ui.wait_status(page, "txt2img", "Interrupted", "Done", "Error")
        assert line.startswith("Interrupted:") and "the last from where sampling stopped" in line, line
        assert ui.wait_status(second, "txt2img", "Interrupted") == line
        kept = ui.gallery_images(page, "txt2img")
        assert kept and kept[-1].size == (64, 64), "the image sampled so far is shown"
        assert page.is_visible("#txt2img_generate")
        page.wait_for_function("() => !document.title.startsWith('[')")
        page.wait_for_function("() => window.webuiBeeps === 1")
    finally:
        page.request.post(fake_app.url + "sdapi/v1/options", data=json.dumps({"notification_audio": False}),
                          headers={"Content-Type": "application/json"})
