"""The ControlNet accordion of txt2img and img2img: a tab per unit, as the extension's users know it.

Each unit's widgets are registered in the tab's fields as ``controlnet.<i>.<field>``
(the extension's field names), so PNG Info and "Send to" restore them by name;
the Generate handler folds them into ``alwayson_scripts.controlnet.args``.
Dropping an image ticks Enable and shows the preprocessor's output at once.
"""
from __future__ import annotations

import gradio as gr

from webui.controlnet import CONTROL_MODES, RESIZE_MODES, UNIT_COUNT, ControlUnit, units_from_infotext
from webui.controlnet.preprocessors import MODULES, find_module, needs_network, run_module
from webui.jobs.follow import submit_and_wait
from webui.schemas import DETECT_JOB_KIND, DetectRequest, InvalidRequest, JobStatus, WebUIError
from webui.ui import common

PREFIX = "controlnet."
_DEFAULT = ControlUnit(enabled=False)
_HIDDEN_THRESHOLD = {"label": "Threshold", "minimum": -1, "maximum": 255, "value": -1, "step": 1}


def model_choices(services) -> list[str]:
    """"None" and the ControlNet files as the extension lists them."""
    return ["None", *(info.title for info in services.catalog.controlnets())]


def threshold_sliders(module_name: str) -> list[dict]:
    """Label, range and default of the two threshold sliders for a module; hidden when it has none."""
    try:
        module = find_module(module_name)
    except InvalidRequest:
        module = find_module("none")
    out = []
    for index in range(2):
        if index < len(module.thresholds):
            s = module.thresholds[index]
            out.append({"label": s.name, "minimum": s.min, "maximum": s.max, "value": s.value, "step": s.step,
                        "visible": True})
        else:
            out.append({**_HIDDEN_THRESHOLD, "visible": False})
    return out


async def preview(services, image, module_name, resolution, threshold_a, threshold_b, owner: str = ""):
    """The preprocessor's output for the preview (a warning in place of an image when it cannot run).

    Preprocessors that run a network go through the queue as a job, as only its worker holds weights.
    """
    if image is None:
        return None
    settings = (int(resolution or -1), float(threshold_a if threshold_a is not None else -1),
                float(threshold_b if threshold_b is not None else -1))
    try:
        if not needs_network(module_name):
            return run_module(module_name, image, *settings)
        request = DetectRequest(module=module_name, images=[image], processor_res=settings[0],
                                threshold_a=settings[1], threshold_b=settings[2])
        job = await submit_and_wait(services.queue, DETECT_JOB_KIND, request, owner=owner)
        if job.status != JobStatus.SUCCEEDED or not job.result.images:
            raise InvalidRequest(job.error or f"the preprocessor job was {job.status.value}")
        return job.result.images[0]
    except WebUIError as exc:
        gr.Warning(str(exc))
        return None


def _unit_tab(tab: str, index: int, services) -> dict:
    key = f"{tab}_controlnet_{index}"
    with gr.Row():
        image = gr.Image(label="Control image", type="pil", sources=["upload", "clipboard"], height=256,
                         elem_id=f"{key}_image")
        shown = gr.Image(label="Preprocessor preview", type="pil", interactive=False, height=256,
                         elem_id=f"{key}_preview")
    with gr.Row():
        enabled = gr.Checkbox(label="Enable", value=False, elem_id=f"{key}_enabled")
        pixel_perfect = gr.Checkbox(label="Pixel Perfect", value=False, elem_id=f"{key}_pixel_perfect")
    with gr.Row():
        module = gr.Dropdown(label="Preprocessor", choices=[m.name for m in MODULES], value="none",
                             elem_id=f"{key}_module")
        model = gr.Dropdown(label="Model", choices=model_choices(services), value="None", allow_custom_value=True,
                            elem_id=f"{key}_model")
        refresh = gr.Button("🔄", elem_id=f"{key}_refresh", scale=0, min_width=40)
    weight = gr.Slider(label="Control Weight", minimum=0.0, maximum=2.0, step=0.05, value=1.0,
                       elem_id=f"{key}_weight")
    with gr.Row():
        start = gr.Slider(label="Starting Control Step", minimum=0.0, maximum=1.0, step=0.01, value=0.0,
                          elem_id=f"{key}_guidance_start")
        end = gr.Slider(label="Ending Control Step", minimum=0.0, maximum=1.0, step=0.01, value=1.0,
                        elem_id=f"{key}_guidance_end")
    with gr.Row():
        resolution = gr.Slider(label="Preprocessor Resolution", minimum=64, maximum=2048, step=8, value=512,
                               elem_id=f"{key}_processor_res")
        thresholds = [gr.Slider(**{k: v for k, v in s.items()}, elem_id=f"{key}_threshold_{name}")
                      for s, name in zip(threshold_sliders("none"), ("a", "b"))]
    control_mode = gr.Radio(label="Control Mode", choices=list(CONTROL_MODES), value=_DEFAULT.control_mode,
                            elem_id=f"{key}_control_mode")
    resize_mode = gr.Radio(label="Resize Mode", choices=list(RESIZE_MODES), value=_DEFAULT.resize_mode,
                           elem_id=f"{key}_resize_mode")

    preview_inputs = [image, module, resolution, *thresholds]

    async def run_preview(image, module_name, resolution, threshold_a, threshold_b, request: gr.Request):
        return await preview(services, image, module_name, resolution, threshold_a, threshold_b,
                             common.owner_of(request))

    image.upload(lambda: True, outputs=[enabled], show_progress="hidden")
    for trigger in (image.change, resolution.release, thresholds[0].release, thresholds[1].release):
        trigger(run_preview, inputs=preview_inputs, outputs=[shown], show_progress="hidden")
    module.input(lambda name: [gr.Slider(**s) for s in threshold_sliders(name)], inputs=[module],
                 outputs=thresholds, show_progress="hidden").then(
        run_preview, inputs=preview_inputs, outputs=[shown], show_progress="hidden")
    refresh.click(lambda: gr.Dropdown(choices=_refreshed(services)), outputs=[model], show_progress="hidden")
    return {"image": image, "enabled": enabled, "module": module, "model": model, "weight": weight,
            "guidance_start": start, "guidance_end": end, "processor_res": resolution,
            "threshold_a": thresholds[0], "threshold_b": thresholds[1], "pixel_perfect": pixel_perfect,
            "control_mode": control_mode, "resize_mode": resize_mode}


def _refreshed(services) -> list[str]:
    services.catalog.refresh_controlnets()
    return model_choices(services)


def build_controlnet_accordion(tab: str, services) -> dict:
    """The accordion with one tab per unit; returns ``{"controlnet.<i>.<field>": component}``."""
    widgets: dict = {}
    with gr.Accordion("ControlNet", open=False, elem_id=f"{tab}_controlnet"):
        with gr.Tabs():
            for index in range(UNIT_COUNT):
                with gr.Tab(f"ControlNet Unit {index}", elem_id=f"{tab}_controlnet_unit_{index}"):
                    own = _unit_tab(tab, index, services)
                widgets.update({f"{PREFIX}{index}.{name}": comp for name, comp in own.items()})
    return widgets


def take_unit_values(named: dict) -> list[dict]:
    """Remove the unit widgets' values from ``named``; the enabled units as the extension's unit dicts."""
    units: dict[int, dict] = {}
    for name in [n for n in named if n.startswith(PREFIX)]:
        index, _, field = name[len(PREFIX):].partition(".")
        units.setdefault(int(index), {})[field] = named.pop(name)
    return [units[i] for i in sorted(units) if units[i].get("enabled")]


def infotext_unit_fields(parsed: dict) -> dict:
    """Widget values of every unit from parsed infotext: the recorded units enabled, the others off."""
    restored = units_from_infotext(parsed)
    fields = {}
    for index in range(UNIT_COUNT):
        if index < len(restored):
            unit = restored[index]
            values = {name: getattr(unit, name) for name in ("module", "model", "weight", "guidance_start",
                                                             "guidance_end", "pixel_perfect", "control_mode",
                                                             "resize_mode")}
            values["enabled"] = True
            if unit.processor_res > 0:
                values["processor_res"] = unit.processor_res
        else:
            values = {"enabled": False}
        fields.update({f"{PREFIX}{index}.{name}": value for name, value in values.items()})
    return fields
