"""Quicksettings, the theme toggle, saved tab defaults and the CPU guard, in the browser."""
from __future__ import annotations

import json

from tests.browser import ui


def _stored(fake_app) -> dict:
    return json.loads((fake_app.outdir / "config.json").read_text())


def _number(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} input[type=number]").first.input_value()


def test_quicksettings_theme_and_tab_defaults_persist(page, fake_app, new_page):
    try:
        ui.set_number(page, "quick_CLIP_stop_at_last_layers", 2)
        page.wait_for_function("() => document.querySelector('#txt2img_clip_skip input[type=number]').value === '2'")
        assert _stored(fake_app)["CLIP_stop_at_last_layers"] == 2
        page.click("#theme_toggle")
        page.wait_for_function("() => document.body.classList.contains('dark')")
        ui.set_number(page, "txt2img_steps", 33)
        ui.open_tab(page, "settings")
        page.click("#settings_save_ui_defaults")
        page.wait_for_function("() => document.querySelector('#settings_result').innerText.includes('Saved')")
        assert json.loads((fake_app.outdir / "ui-config.json").read_text())["txt2img/Sampling steps/value"] == 33
        page.reload()  # the theme is kept by the browser, the rest by the server
        page.wait_for_selector("#txt2img_generate", timeout=ui.DONE_TIMEOUT_MS)  # a whole page load again
        page.wait_for_function("() => document.querySelector('#txt2img_steps input[type=number]').value === '33'",
                               timeout=ui.DONE_TIMEOUT_MS)
        assert page.evaluate("() => document.body.classList.contains('dark')")
        assert _number(page, "quick_CLIP_stop_at_last_layers") == "2"
    finally:  # the app is shared by the session's other browser tests
        (fake_app.outdir / "ui-config.json").unlink(missing_ok=True)
        page.request.post(fake_app.url + "sdapi/v1/options", data=json.dumps({"CLIP_stop_at_last_layers": 1}),
                          headers={"Content-Type": "application/json"})


def test_a_huge_cpu_job_asks_first(page, fake_app):
    ui.fill_text(page, "txt2img_prompt", "a huge square")
    ui.set_number(page, "txt2img_width", 2048)
    ui.set_number(page, "txt2img_height", 2048)
    ui.set_number(page, "txt2img_steps", 20)
    status = ui.generate(page, "txt2img")
    assert "large for a CPU" in status and "2048x2048" in status and "press Generate again" in status
