"""The Script dropdown of the generation tabs: A1111's scripts per tab, their controls, folded into the request."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("gradio")

from webui.schemas import GenerationRequest, InvalidRequest  # noqa: E402
from webui.ui import params  # noqa: E402
from webui.ui import scripts as scripts_ui  # noqa: E402


def test_each_tab_has_a1111s_script_dropdown_with_its_scripts(tmp_path):
    from tests.test_ui_parts import build_fake_ui

    demo, _ = build_fake_ui(tmp_path)
    blocks = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    choices = {tab: [c[0] if isinstance(c, tuple) else c for c in blocks[f"{tab}_script"].choices]
               for tab in ("txt2img", "img2img")}
    assert choices["txt2img"] == ["None", "Prompt matrix", "Prompts from file or textbox", "X/Y/Z plot"]
    assert {"Loopback", "SD upscale", "Outpainting mk2", "Poor man's outpainting"} <= set(choices["img2img"])
    x_type = blocks["txt2img_script_xyz_plot_x_type"]
    labels = [c[0] if isinstance(c, tuple) else c for c in x_type.choices]
    assert x_type.value == "Seed" and "Hires steps" in labels and "FP8 mode" not in labels  # only honoured axes
    assert blocks["txt2img_script_xyz_plot"].visible is False


def test_chosen_scripts_widgets_become_the_requests_validated_script():
    widgets = {name: object() for name in ("script_name", "scripts.xyz_plot.x_type", "scripts.xyz_plot.x_values",
                                           "scripts.prompt_matrix.put_at_start")}
    values = {widgets["script_name"]: "X/Y/Z plot", widgets["scripts.xyz_plot.x_type"]: "Steps",
              widgets["scripts.xyz_plot.x_values"]: "1-3", widgets["scripts.prompt_matrix.put_at_start"]: True}
    named = params.request_fields(widgets, values)
    title, chosen = scripts_ui.take_script(named)
    assert named == {} and chosen == {"x_type": "Steps", "x_values": "1-3"}
    services = SimpleNamespace(catalog=None, upscalers=None, settings=SimpleNamespace(max_image_pixels=1 << 24))
    request = scripts_ui.attach_ui_script(GenerationRequest(prompt="a"), title, chosen, services)
    assert request.script_name == "xyz_plot" and request.script_args["x_values"] == "1-3"
    with pytest.raises(InvalidRequest):
        scripts_ui.attach_ui_script(GenerationRequest(prompt="a"), title, {"x_type": "Steps", "x_values": "a"},
                                    services)
    untouched = scripts_ui.attach_ui_script(GenerationRequest(prompt="a"), "None", {}, services)
    assert untouched.script_name == ""
