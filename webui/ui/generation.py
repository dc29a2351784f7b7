"""The skeleton shared by the txt2img, img2img and inpaint tabs.

A tab module supplies its own input widgets (``build_inputs``) and how they turn
into request fields (``extra_fields``); everything else (prompt row, sampling
parameters, result panel, Generate handler) is the same for all three.
"""
from dataclasses import dataclass, field
from typing import Callable

import gradio as gr

from webui.schemas import GenerationRequest
from webui.ui import (addons, controlnet, cpu_guard, networks, params, prompt_tools, results, scripts,
                      size_readouts)


@dataclass
class GenerationTab:
    """The widgets of one generation tab, by name."""

    name: str
    prompt: params.PromptWidgets
    fields: dict  # request field name -> component
    panel: results.ResultPanel
    inputs: dict = field(default_factory=dict)  # tab-specific widgets (init image, editor...)

    def wire_resume(self, demo: gr.Blocks, services) -> None:
        """On page load, take back this browser's running and queued jobs of this tab (reload, second tab)."""
        name, panel = self.name, self.panel

        def resume(request: gr.Request):
            yield from results.resume_jobs(panel, services, lambda job: job_tab(job) == name, request)

        demo.load(resume, outputs=panel.outputs, concurrency_limit=None, show_progress="hidden")


def job_tab(job) -> str:
    """The tab a generation job was made in: txt2img, img2img, or inpaint (an img2img job with a mask)."""
    if getattr(job, "kind", "") == "txt2img":
        return "txt2img"
    return "inpaint" if getattr(getattr(job, "request", None), "mask", None) is not None else "img2img"


def build_generation_tab(
    name: str,
    services,
    checkpoint: gr.Dropdown,
    *,
    build_inputs: Callable[[], dict] | None = None,
    extra_fields: Callable[[dict, dict], dict] | None = None,
    hires: bool = False,
    run_jobs: Callable | None = None,
) -> GenerationTab:
    """Lay out a tab like A1111's (prompt row on top, parameters left, output right) and wire Generate.

    ``build_inputs()`` creates the tab's own widgets and returns them by name; those
    named after request fields are read directly; ``extra_fields(own_values, fields)``
    gets the others by name plus the fields read so far, checks them and returns
    the final fields (raising InvalidRequest for what cannot run). ``run_jobs(panel,
    services, build, request, own_values)``, when given, submits and follows the
    jobs itself (img2img's Batch sub-tab: one job per image of a folder).
    """
    prompt = params.build_prompt_row(name, services)
    tools = prompt_tools.build_prompt_tools(name)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, elem_id=f"{name}_settings"):
            # In the parameters' column, so that the results start right under the prompt.
            with gr.Accordion("Extra networks", open=False, elem_id=f"{name}_networks"):
                networks.build_networks_panel(name, services, prompt.prompt, checkpoint)
            inputs = build_inputs() if build_inputs else {}
            sampling = params.build_sampling(name, services)
            hr = params.build_hires(name, services) if hires else {}
            addon_widgets = addons.build_addon_accordions(name, name, services, checkpoint)
            if name in ("txt2img", "img2img"):  # as the extension: its accordion in txt2img and img2img
                addon_widgets.update(controlnet.build_controlnet_accordion(name, services))
            script_widgets = scripts.build_script_panel(name, name, services)
        with gr.Column(scale=1, elem_id=f"{name}_results"):
            panel = results.build_result_panel(name, buttons=(prompt.interrupt, prompt.skip))
    fields = {
        "prompt": prompt.prompt,
        "negative_prompt": prompt.negative_prompt,
        "styles": prompt.styles,
        "checkpoint": checkpoint,
        **params.widget_fields(sampling),
        **params.widget_fields(hr),
        **addon_widgets,
        **script_widgets,
        **{k: v for k, v in inputs.items() if k in params.FIELD_TYPES},
    }
    tab = GenerationTab(name, prompt, fields, panel, inputs)
    prompt_tools.wire_prompt_tools(tools, prompt, services, fields, services.prompt_token_counter())
    if hr:
        size_readouts.wire_hires_readout(hr["_hr_readout"], fields)
    if inputs.get("init_image") is not None:  # img2img (no event reads inpaint's editor while a picture loads)
        size_readouts.wire_size_from_image(inputs["init_image"], fields)
    if inputs.get("_scale_by") is not None:
        size_readouts.wire_resize_by(inputs["init_image"], inputs["_scale_by"], inputs["_resize_readout"], fields)
    own = {k: v for k, v in inputs.items() if k not in params.FIELD_TYPES and not k.startswith("_")}
    extra = sampling["_extra"]
    guard = cpu_guard.LargeJobGuard(cpu_guard.runs_on_cpu(services),
                                    lambda: services.options.get("cpu_confirm_pixel_steps") if services.options else 0)

    def generate(values: dict, request: gr.Request):
        def build():
            named = params.request_fields(fields, values)
            if not values.get(extra):
                named = params.without_seed_extras(named)
            named["styles"] = list(named.get("styles") or [])
            named["addons"] = addons.take_addon_values(named)
            units = controlnet.take_unit_values(named)
            if units:
                named["alwayson_scripts"] = {"controlnet": {"args": units}}
            script_title, script_values = scripts.take_script(named)
            if not named.get("checkpoint"):
                named.pop("checkpoint", None)
            if extra_fields:
                named = extra_fields({k: values.get(c) for k, c in own.items()}, named)
            job_request = scripts.attach_ui_script(GenerationRequest(**named), script_title, script_values, services)
            guard.check(getattr(request, "session_hash", None) or "", job_request)
            return job_request

        if run_jobs:
            yield from run_jobs(panel, services, build, request, {k: values.get(c) for k, c in own.items()})
            return
        yield from results.submit_and_follow(panel, services, "txt2img" if name == "txt2img" else "img2img", build, request)

    all_inputs = set(fields.values()) | set(own.values()) | {extra}
    # Handlers only poll the queue, so they may run side by side (the queue serialises the work).
    prompt.generate.click(generate, inputs=all_inputs, outputs=panel.outputs, concurrency_limit=None,
                          show_progress="minimal")
    prompt.prompt.submit(generate, inputs=all_inputs, outputs=panel.outputs, concurrency_limit=None,
                         show_progress="minimal")
    sampling["_reuse_seed"].click(results.selected_seed, inputs=[panel.state], outputs=[fields["seed"]], queue=False,
                                  show_progress="hidden")
    results.wire_controls(panel, services)
    return tab
