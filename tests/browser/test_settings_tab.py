"""The Settings tab in the browser: a saving option changed there is stored, and is still there after a reload."""
from __future__ import annotations

import json

from tests.browser import ui


def _stored(fake_app) -> dict:
    return json.loads((fake_app.outdir / "config.json").read_text())


def test_settings_tab_changes_saving_options_and_they_persist(page, fake_app, new_page):
    ui.open_tab(page, "settings")
    ui.choose(page, "setting_samples_format", "webp")
    ui.fill_text(page, "setting_samples_filename_pattern", "[seed]-[model_name]")
    page.click("#settings_submit")
    page.wait_for_function("() => document.querySelector('#settings_result').innerText.includes('changed')")
    assert "samples_format" in ui.text_of(page, "settings_result")
    stored = _stored(fake_app)
    assert stored["samples_format"] == "webp" and stored["samples_filename_pattern"] == "[seed]-[model_name]"
    try:
        # A fresh page shows the stored values; a bad value is refused with a message naming it.
        again = new_page(fake_app.url)
        ui.open_tab(again, "settings")
        # The stored values arrive with the page's load event.
        again.wait_for_function("() => document.querySelector('#setting_samples_format input').value === 'webp'")
        ui.fill_text(again, "setting_outdir_samples", "../../outside")
        again.click("#settings_submit")
        again.wait_for_function("() => document.querySelector('#settings_result').innerText.includes('Not saved')")
        assert "outdir_samples" in ui.text_of(again, "settings_result")
        assert _stored(fake_app)["outdir_samples"] == ""
    finally:  # the app is shared by the session's other browser tests
        options = {"samples_format": "png", "samples_filename_pattern": ""}
        page.request.post(fake_app.url + "sdapi/v1/options", data=json.dumps(options),
                          headers={"Content-Type": "application/json"})
