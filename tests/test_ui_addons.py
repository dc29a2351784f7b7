"""Add-on accordions in the generation tabs: built from the typed fields, folded into the request, restored."""
from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from webui.addons import resolve_addons  # noqa: E402
from webui.infotext import format_infotext, parse_infotext  # noqa: E402
from webui.schemas import GenerationRequest  # noqa: E402
from webui.ui import addons as addons_ui  # noqa: E402
from webui.ui import params, pnginfo  # noqa: E402


def test_every_tab_has_an_accordion_per_addon_and_soft_inpainting_only_in_inpaint(tmp_path):
    from tests.test_ui_parts import build_fake_ui

    demo, _ = build_fake_ui(tmp_path)
    blocks = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    for tab in ("txt2img", "img2img", "inpaint"):
        for key in ("dynamic_thresholding", "cfg_rescale", "freeu", "perturbed_attention"):
            assert f"{tab}_{key}" in blocks
        assert blocks[f"{tab}_dynamic_thresholding_mimic_scale"].value == 7.0
        assert blocks[f"{tab}_dynamic_thresholding_mimic_mode"].value == "Constant"
    assert "inpaint_soft_inpainting" in blocks and "txt2img_soft_inpainting" not in blocks
    assert blocks["inpaint_soft_inpainting_inpaint_detail_preservation"].value == 4.0


def test_widget_values_become_the_requests_named_addons():
    widgets = {name: object() for name in ("addons.freeu.enabled", "addons.freeu.b1", "addons.cfg_rescale.phi")}
    steps = object()
    values = {widgets["addons.freeu.enabled"]: True, widgets["addons.freeu.b1"]: 1.4,
              widgets["addons.cfg_rescale.phi"]: 0.0, steps: 8.0}
    named = params.request_fields({**widgets, "steps": steps}, values)
    named["addons"] = addons_ui.take_addon_values(named)
    request = GenerationRequest(**named)
    assert request.steps == 8 and request.addons == {"freeu": {"enabled": True, "b1": 1.4},
                                                     "cfg_rescale": {"phi": 0.0}}
    active, _ = resolve_addons(request.addons, {})
    assert set(active) == {"freeu"} and active["freeu"]["b2"] == 1.02


def test_png_info_restores_addon_widgets_and_turns_absent_ones_off():
    text = format_infotext("a cat", "", {"Steps": 4, "Dynamic thresholding enabled": True, "Mimic scale": 4.5,
                                         "pagi_enabled": True, "pagi_scale": 2})
    fields = pnginfo.infotext_fields(text)
    assert fields["steps"] == 4
    assert fields["addons.dynamic_thresholding.enabled"] is True
    assert fields["addons.dynamic_thresholding.mimic_scale"] == 4.5
    assert fields["addons.perturbed_attention.scale"] == 2.0
    assert fields["addons.freeu.enabled"] is False and fields["addons.cfg_rescale.phi"] == 0.0
    assert parse_infotext(text)["Mimic scale"] == "4.5"


def test_freeu_sliders_follow_the_checkpoints_family():
    from types import SimpleNamespace

    from webui.schemas import NotFound

    families = {"xl.safetensors": "sdxl", "v15.safetensors": "sd1", "v21.safetensors": "sd2"}

    def find_checkpoint(title):
        if title not in families:
            raise NotFound(title)
        return SimpleNamespace(detection=SimpleNamespace(family=families[title]))

    services = SimpleNamespace(catalog=SimpleNamespace(find_checkpoint=find_checkpoint))
    assert addons_ui.family_freeu_values(services, "xl.safetensors") == (1.3, 1.4, 0.9, 0.2)
    assert addons_ui.family_freeu_values(services, "v15.safetensors") == (1.5, 1.6, 0.9, 0.2)
    assert addons_ui.family_freeu_values(services, "v21.safetensors") == (1.4, 1.6, 0.9, 0.2)
    assert addons_ui.family_freeu_values(services, "gone.safetensors") == (1.01, 1.02, 0.99, 0.95)
