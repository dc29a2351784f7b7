"""Generation parameter widgets shared by the txt2img, img2img and inpaint tabs.

Every builder returns ``{field_name: component}`` with GenerationRequest's field
names, so a handler reads values by name and builds ``GenerationRequest(**fields)``
(house rule 1: never positional lists of widget values).
"""
import dataclasses
from dataclasses import dataclass

import gradio as gr

from webui.schemas import MAX_STEPS, GenerationRequest, InvalidRequest
from webui.ui import clip_skip, common

# GenerationRequest field name -> type of its default, to cast widget values.
FIELD_TYPES = {f.name: type(f.default) for f in dataclasses.fields(GenerationRequest) if f.default is not dataclasses.MISSING}


@dataclass
class PromptWidgets:
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    styles: gr.Dropdown
    generate: gr.Button
    interrupt: gr.Button | None = None  # beside Generate; the page script makes them replace it while a job runs
    skip: gr.Button | None = None


def build_prompt_row(tab: str, services) -> PromptWidgets:
    """Prompt, negative prompt, styles and the Generate button, as A1111's top row."""
    with gr.Row(elem_id=f"{tab}_toprow"):
        with gr.Column(scale=6):
            prompt = gr.Textbox(label="Prompt", elem_id=f"{tab}_prompt", lines=3, placeholder="Prompt")
            negative = gr.Textbox(label="Negative prompt", elem_id=f"{tab}_neg_prompt", lines=2, placeholder="Negative prompt")
        with gr.Column(scale=1, min_width=180):
            generate = gr.Button("Generate", elem_id=f"{tab}_generate", variant="primary", size="lg",
                                 elem_classes=["webui-generate"])
            with gr.Row(elem_id=f"{tab}_job_buttons", elem_classes=["webui-job-buttons"]):
                interrupt = gr.Button("Interrupt", elem_id=f"{tab}_interrupt", variant="stop", size="sm", min_width=60)
                skip = gr.Button("Skip", elem_id=f"{tab}_skip", size="sm", min_width=60)
            styles = gr.Dropdown(
                label="Styles", elem_id=f"{tab}_styles", choices=common.style_names(services), value=[],
                multiselect=True, allow_custom_value=False,
            )
    return PromptWidgets(prompt, negative, styles, generate, interrupt, skip)


def build_sampling(tab: str, services) -> dict:
    """Sampler, schedule, steps, size, batch, CFG, seed (with Random and Reuse), clip skip, restore faces."""
    fields: dict = {}
    width, height = common.native_size(services, common.current_checkpoint_title(services))
    clip_limit = clip_skip.clip_skip_limit(services, common.current_checkpoint_title(services))
    samplers = common.sampler_names(services)
    schedulers = common.scheduler_names(services)
    with gr.Row():
        fields["sampler_name"] = gr.Dropdown(label="Sampling method", elem_id=f"{tab}_sampling", choices=samplers,
                                             value="Euler a" if "Euler a" in samplers else samplers[0])
        fields["scheduler"] = gr.Dropdown(label="Schedule type", elem_id=f"{tab}_scheduler", choices=schedulers,
                                          value="Automatic" if "Automatic" in schedulers else schedulers[0])
        fields["steps"] = gr.Slider(label="Sampling steps", elem_id=f"{tab}_steps", minimum=1, maximum=MAX_STEPS, step=1, value=20)
    with gr.Row():
        with gr.Column(scale=4):
            fields["width"] = gr.Slider(label="Width", elem_id=f"{tab}_width", minimum=64, maximum=2048, step=8, value=width)
            fields["height"] = gr.Slider(label="Height", elem_id=f"{tab}_height", minimum=64, maximum=2048, step=8, value=height)
        with gr.Column(scale=1, min_width=180):  # wide enough for the number box and its reset button
            fields["n_iter"] = gr.Slider(label="Batch count", elem_id=f"{tab}_batch_count", minimum=1, maximum=100, step=1, value=1)
            fields["batch_size"] = gr.Slider(label="Batch size", elem_id=f"{tab}_batch_size", minimum=1, maximum=8, step=1, value=1)
    fields["cfg_scale"] = gr.Slider(label="CFG Scale", elem_id=f"{tab}_cfg_scale", minimum=1, maximum=30, step=0.5, value=7.0)
    with gr.Row():
        fields["seed"] = gr.Number(label="Seed", elem_id=f"{tab}_seed", value=-1, precision=0, scale=4)
        random_seed = gr.Button("Random", elem_id=f"{tab}_random_seed", scale=0, min_width=70, size="sm")
        reuse_seed = gr.Button("Reuse", elem_id=f"{tab}_reuse_seed", scale=0, min_width=70, size="sm")
        fields["clip_skip"] = gr.Slider(label="Clip skip", elem_id=f"{tab}_clip_skip", minimum=1, step=1,
                                       maximum=clip_limit, scale=2,
                                       value=min(clip_limit, _option(services, "CLIP_stop_at_last_layers", 1)))
        extra = gr.Checkbox(label="Extra", elem_id=f"{tab}_subseed_show", value=False, scale=0, min_width=80)
    fields.update(build_variation_seed(tab, extra))
    with gr.Row():
        fields["restore_faces"] = gr.Checkbox(label="Restore faces", elem_id=f"{tab}_restore_faces", value=False,
                                              info=common.face_weights_note(services))
        faces = common.face_restorer_names(services)
        fields["face_restorer"] = gr.Dropdown(label="Face restorer", elem_id=f"{tab}_face_restorer", choices=faces,
                                              value="CodeFormer" if "CodeFormer" in faces else faces[0])
    random_seed.click(lambda: -1, outputs=[fields["seed"]], queue=False, show_progress="hidden")
    fields["_random_seed"] = random_seed
    fields["_extra"] = extra
    fields["_reuse_seed"] = reuse_seed
    return fields


def build_variation_seed(tab: str, extra: gr.Checkbox) -> dict:
    """A1111's "Extra" seed options, shown while the checkbox is ticked: variation seed and seed resize."""
    fields: dict = {}
    with gr.Group(visible=False, elem_id=f"{tab}_seed_extras") as group:
        with gr.Row():
            fields["subseed"] = gr.Number(label="Variation seed", elem_id=f"{tab}_subseed", value=-1, precision=0,
                                          scale=4)
            random_subseed = gr.Button("Random", elem_id=f"{tab}_random_subseed", scale=0, min_width=70, size="sm")
            fields["subseed_strength"] = gr.Slider(label="Variation strength", elem_id=f"{tab}_subseed_strength",
                                                   minimum=0, maximum=1, step=0.01, value=0, scale=4)
        with gr.Row():
            fields["seed_resize_from_w"] = gr.Slider(label="Resize seed from width", minimum=0, maximum=2048,
                                                     step=8, value=0, elem_id=f"{tab}_seed_resize_from_w")
            fields["seed_resize_from_h"] = gr.Slider(label="Resize seed from height", minimum=0, maximum=2048,
                                                     step=8, value=0, elem_id=f"{tab}_seed_resize_from_h")
    extra.change(lambda show: gr.Group(visible=bool(show)), inputs=[extra], outputs=[group], queue=False,
                 show_progress="hidden")
    random_subseed.click(lambda: -1, outputs=[fields["subseed"]], queue=False, show_progress="hidden")
    # Values pasted from an image's parameters (Send to txt2img) tick the box, so they are used and seen.
    for name in ("subseed_strength", "seed_resize_from_w", "seed_resize_from_h"):
        fields[name].change(lambda value, shown: gr.Checkbox(value=bool(shown) or bool(value)),
                            inputs=[fields[name], extra], outputs=[extra], queue=False, show_progress="hidden")
    return fields


def without_seed_extras(named: dict) -> dict:
    """The request fields with the variation seed and seed resize off (the "Extra" box is not ticked)."""
    return {**named, "subseed_strength": 0.0, "seed_resize_from_w": 0, "seed_resize_from_h": 0}


def build_hires(tab: str, services) -> dict:
    """A1111's Hires. fix accordion (txt2img only)."""
    fields: dict = {}
    with gr.Accordion("Hires. fix", open=False, elem_id=f"{tab}_hr"):
        fields["enable_hr"] = gr.Checkbox(label="Enable hires. fix", elem_id=f"{tab}_enable_hr", value=False)
        with gr.Row():
            fields["hr_upscaler"] = gr.Dropdown(label="Upscaler", elem_id=f"{tab}_hr_upscaler",
                                                choices=common.hr_upscaler_names(services), value="Latent")
            fields["hr_second_pass_steps"] = gr.Slider(label="Hires steps", elem_id=f"{tab}_hires_steps",
                                                       minimum=0, maximum=MAX_STEPS, step=1, value=0)
            fields["denoising_strength"] = gr.Slider(label="Denoising strength", elem_id=f"{tab}_denoising_strength",
                                                     minimum=0, maximum=1, step=0.01, value=0.7)
        with gr.Row():
            fields["hr_scale"] = gr.Slider(label="Upscale by", elem_id=f"{tab}_hr_scale", minimum=1, maximum=4, step=0.05, value=2.0)
            fields["hr_resize_x"] = gr.Slider(label="Resize width to", elem_id=f"{tab}_hr_resize_x", minimum=0, maximum=2048, step=8, value=0)
            fields["hr_resize_y"] = gr.Slider(label="Resize height to", elem_id=f"{tab}_hr_resize_y", minimum=0, maximum=2048, step=8, value=0)
        fields["_hr_readout"] = gr.Markdown("", elem_id=f"{tab}_hr_readout")
    return fields


def widget_fields(fields: dict) -> dict:
    """Only the entries that are request fields (helpers such as seed buttons start with ``_``)."""
    return {name: comp for name, comp in fields.items() if not name.startswith("_")}


def coerce(name: str, value):
    """Cast a widget value to the request field's type (sliders give floats, numbers may be None)."""
    kind = FIELD_TYPES.get(name)
    if value is None:
        return None
    try:
        if kind is int:
            return int(round(float(value)))
        if kind is float:
            return float(value)
        if kind is bool:
            return bool(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a number, got {value!r}", field=name) from None
    return value


def request_fields(fields: dict, values: dict) -> dict:
    """``{field name: typed value}`` from a handler's ``{component: value}`` dict."""
    out = {}
    for name, comp in widget_fields(fields).items():
        value = coerce(name, values.get(comp))
        if value is not None:
            out[name] = value
    return out



def _option(services, key: str, default):
    """An option's stored value, or ``default`` without an options store."""
    options = getattr(services, "options", None)
    return options.get(key, default) if options is not None else default
