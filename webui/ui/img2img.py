"""The img2img tab: an init image (upload, drag and drop, paste) plus denoising strength and resize mode."""
import gradio as gr

from webui.schemas import InvalidRequest
from webui.ui import common, img2img_batch, results
from webui.ui.generation import GenerationTab, build_generation_tab
from webui.ui.capped_images import capped


def build_img2img_inputs(tab: str = "img2img") -> dict:
    """The init image (or, in the Batch sub-tab, the folders) and the img2img-only parameters, by name."""
    batch_mode = gr.State(False)
    with gr.Tabs(elem_id=f"mode_{tab}"):
        with gr.Tab("img2img", elem_id=f"{tab}_img2img_tab") as single_tab:
            image = capped(gr.Image(label="Image for img2img", elem_id=f"{tab}_image", type="pil", image_mode="RGB",
                                    sources=["upload", "clipboard"], height=360, format="png"))
        with gr.Tab("Batch", elem_id=f"{tab}_batch_tab") as batch_tab:
            batch = img2img_batch.build_batch_inputs(tab)
    single_tab.select(lambda: False, outputs=[batch_mode], queue=False, show_progress="hidden")
    batch_tab.select(lambda: True, outputs=[batch_mode], queue=False, show_progress="hidden")
    resize = gr.Radio(label="Resize mode", elem_id=f"{tab}_resize_mode", choices=common.RESIZE_MODES,
                      value=common.RESIZE_MODES[0], type="index")
    with gr.Row():
        scale_by = gr.Slider(label="Resize by (sets width and height from the image)", elem_id=f"{tab}_scale_by",
                             minimum=0.05, maximum=4.0, step=0.05, value=1.0)
        readout = gr.Markdown("Resize: drop an image first", elem_id=f"{tab}_resize_readout")
    denoise = gr.Slider(label="Denoising strength", elem_id=f"{tab}_denoising_strength", minimum=0, maximum=1,
                        step=0.01, value=0.75)
    return {"init_image": image, "resize_mode": resize, "denoising_strength": denoise, "batch_mode": batch_mode,
            "_scale_by": scale_by, "_resize_readout": readout, **batch}


def require_init_image(own: dict, fields: dict) -> dict:
    """img2img needs an init image (the Batch sub-tab brings its own); say so instead of silently running txt2img."""
    if fields.get("init_image") is None and not own.get("batch_mode"):
        raise InvalidRequest("Drop, paste or upload an image first.", field="init_image")
    return fields


def build_img2img_tab(services, checkpoint) -> GenerationTab:
    """Build the tab's widgets (inside a gr.Tab) and wire Generate to an img2img job."""
    return build_generation_tab("img2img", services, checkpoint, build_inputs=build_img2img_inputs,
                                extra_fields=require_init_image, run_jobs=run_single_or_batch)


def run_single_or_batch(panel, services, build, request, own: dict):
    """Generate: one job for the init image, or one per image of the folder when the Batch sub-tab is open."""
    if own.get("batch_mode"):
        yield from img2img_batch.run_batch(panel, services, build, request, own)
    else:
        yield from results.submit_and_follow(panel, services, "img2img", build, request)
