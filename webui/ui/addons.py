"""One accordion per guidance add-on, its widgets built from the add-on's typed fields.

Widgets are registered in a tab's fields as ``addons.<key>.<field>`` so "Send to"
and PNG Info restore them by name like any other field; the Generate handler
folds them into the request's ``addons``.
"""
from __future__ import annotations

import gradio as gr

from webui.addons import ADDONS, AddonSpec, Param
from webui.addons.specs import FREEU_FAMILY_PRESET, FREEU_PRESETS, FreeU

PREFIX = "addons."


def _widget(spec: AddonSpec, param: Param, tab: str):
    elem_id = f"{tab}_{spec.key}_{param.name}"
    if isinstance(param.default, bool):
        return gr.Checkbox(label=param.label, value=param.default, elem_id=elem_id)
    if param.choices is not None:
        return gr.Dropdown(label=param.label, choices=list(param.choices), value=param.default, elem_id=elem_id)
    return gr.Slider(label=param.label, minimum=param.minimum, maximum=param.maximum, step=param.step or 0.01,
                     value=param.default, elem_id=elem_id)


def family_freeu_values(services, title: str | None) -> tuple[float, float, float, float]:
    """FreeU's published b1, b2, s1, s2 for the checkpoint's family (Forge's defaults when unknown)."""
    try:
        family = services.catalog.find_checkpoint(title).detection.family if title else None
    except Exception:  # no such checkpoint (yet): the defaults
        family = None
    return FREEU_PRESETS[FREEU_FAMILY_PRESET.get(family or "", "Forge default")]


def build_addon_accordions(tab: str, mode: str, services=None, checkpoint=None) -> dict:
    """Accordions for the add-ons that apply to ``mode``; returns ``{"addons.<key>.<field>": component}``.

    With ``services`` and the ``checkpoint`` dropdown, FreeU's sliders start at (and
    follow) the published values for the selected checkpoint's family.
    """
    widgets: dict = {}
    for spec in ADDONS:
        if mode not in spec.modes:
            continue
        with gr.Accordion(spec.title, open=False, elem_id=f"{tab}_{spec.key}"):
            own = {p.name: _widget(spec, p, tab) for p in spec.params}
            if spec is FreeU:
                preset = gr.Dropdown(label="Preset (FreeU's published values per model family)",
                                     choices=list(FREEU_PRESETS), value=None, elem_id=f"{tab}_freeu_preset")
                sliders = [own["b1"], own["b2"], own["s1"], own["s2"]]
                preset.input(lambda name: list(FREEU_PRESETS.get(name) or (gr.skip(),) * 4), inputs=[preset],
                             outputs=sliders, show_progress="hidden")
                if services is not None and checkpoint is not None:
                    for slider, value in zip(sliders, family_freeu_values(services, checkpoint.value)):
                        slider.value = value
                    checkpoint.input(lambda title: list(family_freeu_values(services, title)), inputs=[checkpoint],
                                     outputs=sliders, show_progress="hidden")
        widgets.update({f"{PREFIX}{spec.key}.{name}": comp for name, comp in own.items()})
    return widgets


def take_addon_values(named: dict) -> dict:
    """Remove the add-on widgets' values from ``named`` and return them as the request's ``addons``."""
    addons: dict = {}
    for name in [n for n in named if n.startswith(PREFIX)]:
        key, _, field = name[len(PREFIX):].partition(".")
        addons.setdefault(key, {})[field] = named.pop(name)
    return addons


def infotext_addon_fields(parsed: dict) -> dict:
    """Widget values for every add-on from parsed infotext: its values when the text has them, else off."""
    from webui.addons import addons_from_infotext

    found = addons_from_infotext(parsed)
    fields = {}
    for spec in ADDONS:
        values = found.get(spec.key) or {spec.params[0].name: spec.params[0].default}
        fields.update({f"{PREFIX}{spec.key}.{name}": value for name, value in values.items()})
    return fields
