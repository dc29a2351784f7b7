"""A1111's Script dropdown: one group of controls per script, shown when the script is chosen.

Widgets are registered as ``scripts.<key>.<field>`` (and the dropdown as
``script_name``); the Generate handler folds them into the request's
``script_name`` and validated ``script_args``.
"""
from __future__ import annotations

import gradio as gr

from webui.addons import Param
from webui.scripts import find_script, resolve_script
from webui.scripts.base import ScriptEnv
from webui.scripts.registry import scripts_for
from webui.scripts.xyz_axes import axes_for

PREFIX = "scripts."
NONE = "None"
# Fields the UI leaves at their defaults: A1111's info text, and the dropdown twins of the X/Y/Z value boxes.
HIDDEN = {"info", "x_values_dropdown", "y_values_dropdown", "z_values_dropdown", "csv_mode"}


def _choices(spec, param: Param, tab: str, services) -> list[str] | None:
    if param.name.endswith("_type") and spec.key == "xyz_plot":
        return [axis.label for axis in axes_for(tab) if axis.apply is not None]
    if param.name == "upscaler_index" and services is not None and services.upscalers is not None:
        return list(services.upscalers.names())
    if param.name == "inpainting_fill":
        return None
    return list(param.choices) if param.choices else None


def _widget(spec, param: Param, tab: str, services):
    elem_id = f"{tab}_script_{spec.key}_{param.name}"
    choices = _choices(spec, param, tab, services)
    if isinstance(param.default, list):
        return gr.CheckboxGroup(label=param.label, choices=choices or [], value=param.default, elem_id=elem_id)
    if isinstance(param.default, bool):
        return gr.Checkbox(label=param.label, value=param.default, elem_id=elem_id)
    if choices is not None:
        return gr.Dropdown(label=param.label, choices=choices, value=param.default, elem_id=elem_id)
    if isinstance(param.default, (int, float)) and param.minimum is not None:
        return gr.Slider(label=param.label, minimum=param.minimum, maximum=param.maximum,
                         step=param.step or (1 if isinstance(param.default, int) else 0.01), value=param.default,
                         elem_id=elem_id)
    lines = 4 if param.name == "prompt_txt" else 1
    return gr.Textbox(label=param.label, value=str(param.default), lines=lines, elem_id=elem_id)


def build_script_panel(tab: str, mode: str, services=None) -> dict:
    """The Script dropdown and every script's controls for ``mode``; returns ``{field name: component}``."""
    specs = scripts_for(mode)
    widgets: dict = {}
    dropdown = gr.Dropdown(label="Script", choices=[NONE] + [s.title for s in specs], value=NONE,
                           elem_id=f"{tab}_script")
    groups = []
    for spec in specs:
        with gr.Group(visible=False, elem_id=f"{tab}_script_{spec.key}") as group:
            for param in spec.params:
                if param.name in HIDDEN:
                    continue
                widgets[f"{PREFIX}{spec.key}.{param.name}"] = _widget(spec, param, tab, services)
        groups.append(group)
    titles = [s.title for s in specs]
    dropdown.change(lambda title: [gr.update(visible=title == t) for t in titles], inputs=[dropdown],
                    outputs=groups, show_progress="hidden")
    return {"script_name": dropdown, **widgets}


def take_script(named: dict) -> tuple[str, dict]:
    """Remove the script widgets' values from ``named``; return the chosen title and its values by name."""
    title = named.pop("script_name", NONE) or NONE
    spec = find_script(title)
    chosen: dict = {}
    for name in [n for n in named if n.startswith(PREFIX)]:
        key, _, field = name[len(PREFIX):].partition(".")
        value = named.pop(name)
        if spec is not None and key == spec.key:
            chosen[field] = value
    return title, chosen


def attach_ui_script(request, title: str, values: dict, services):
    """Validate the chosen script for ``request`` (InvalidRequest shows as the UI's message) and store it."""
    if title == NONE:
        return request
    env = ScriptEnv(catalog=services.catalog, upscalers=services.upscalers,
                    max_pixels=services.settings.max_image_pixels)
    request.script_name, request.script_args = resolve_script(title, values, request.mode, request, env)
    return request
