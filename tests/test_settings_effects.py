"""Settings: options survive a restart, quicksettings store at once, UI defaults, the CPU guard's estimate."""
from __future__ import annotations

import json

import pytest

from webui.options import Options
from webui.schemas import GenerationRequest, InvalidRequest

gr = pytest.importorskip("gradio")

from webui.ui import cpu_guard, quicksettings, settings, ui_defaults  # noqa: E402


def test_settings_tab_values_are_written_and_read_after_a_restart(tmp_path):
    path = tmp_path / "config.json"
    options = Options(path)
    keys = ["randn_source", "eta_ancestral", "quicksettings_list", "show_progress_every_n_steps"]
    message = settings.apply_settings(options, keys, ["CPU", 0.5, "sd_vae, eta_ddim, CLIP_stop_at_last_layers", 2])
    assert "4 setting(s) changed" in message
    stored = json.loads(path.read_text())
    assert stored["randn_source"] == "CPU" and stored["eta_ancestral"] == 0.5
    assert stored["quicksettings_list"] == ["sd_vae", "eta_ddim", "CLIP_stop_at_last_layers"]
    restarted = Options(path)  # what the next start reads
    assert settings.current_values(restarted, keys) == ["CPU", 0.5, "sd_vae, eta_ddim, CLIP_stop_at_last_layers", 2]
    assert [row.key for row in quicksettings.quick_rows(restarted)] == ["eta_ddim", "CLIP_stop_at_last_layers"]


def test_bad_values_are_refused_with_the_option_named(tmp_path):
    options = Options(tmp_path / "config.json")
    message = settings.apply_settings(options, ["randn_source"], [None])
    assert "Not saved" in message and "randn_source" in message and options.get("randn_source") == "GPU"
    with pytest.raises(InvalidRequest) as info:
        options.update({"quicksettings_list": "sd_vae"})
    assert info.value.field == "quicksettings_list"
    message = quicksettings.store(options, settings.OptionRow("eta_ddim", "Eta for DDIM", "float"), "lots")
    assert "Not saved" in message and options.get("eta_ddim") == 0.0


def test_every_settings_row_is_a_known_option():
    options = Options()
    known = options.as_dict()
    assert [row.key for row in settings.rows() if row.key not in known] == []


def test_cpu_guard_asks_once_for_a_huge_cpu_job():
    guard = cpu_guard.LargeJobGuard(True, lambda: 1024 * 1024 * 20)
    small = GenerationRequest(prompt="x", width=512, height=512, steps=20)
    huge = GenerationRequest(prompt="x", width=2048, height=2048, steps=20)
    guard.check("session", small)
    with pytest.raises(cpu_guard.ConfirmationNeeded) as info:
        guard.check("session", huge)
    assert "2048x2048" in str(info.value) and "84 million" in str(info.value)
    guard.check("session", huge)  # the second press runs it
    with pytest.raises(cpu_guard.ConfirmationNeeded):
        guard.check("session", huge)  # and the next huge job asks again
    cpu_guard.LargeJobGuard(False, lambda: 1).check("session", huge)  # a GPU never asks
    cpu_guard.LargeJobGuard(True, lambda: 0).check("session", huge)  # 0 turns the question off


def test_pixel_steps_count_batches_and_the_hires_pass():
    base = GenerationRequest(prompt="x", width=512, height=512, steps=10, batch_size=2, n_iter=3)
    assert cpu_guard.pixel_steps(base) == 512 * 512 * 10 * 6
    hires = GenerationRequest(prompt="x", width=512, height=512, steps=10, enable_hr=True, hr_scale=2.0,
                              denoising_strength=0.5)
    assert cpu_guard.pixel_steps(hires) == 512 * 512 * 10 + 1024 * 1024 * 5


def test_ui_defaults_round_trip(tmp_path):
    store = ui_defaults.UiDefaults(tmp_path / "ui-config.json")
    with gr.Blocks():
        steps = gr.Slider(label="Sampling steps", value=20)
        checkpoint = gr.Dropdown(label="Stable Diffusion checkpoint")
    keys = ui_defaults.field_keys("txt2img", {"steps": steps, "checkpoint": checkpoint})
    assert list(keys) == ["txt2img/Sampling steps/value"]  # A1111's key; the model is not a tab default
    assert store.save({"txt2img/Sampling steps/value": 31, "x/image/value": object()}) == 1
    assert store.load() == {"txt2img/Sampling steps/value": 31}
    store.reset()
    assert store.load() == {}
