"""The img2img tab: an init image (upload, drag and drop, paste) plus denoising strength and resize mode."""
import gradio as gr

from webui.schemas import InvalidRequest
from webui.ui import common
from webui.ui.generation import GenerationTab, build_generation_tab
from webui.ui.capped_images import capped


def build_img2img_inputs(tab: str = "img2img") -> dict:
    """The init image and the img2img-only parameters, by request field name."""
    image = capped(gr.Image(label="Image for img2img", elem_id=f"{tab}_image", type="pil", image_mode="RGB",
                            sources=["upload", "clipboard"], height=360, format="png"))
    resize = gr.Radio(label="Resize mode", elem_id=f"{tab}_resize_mode", choices=common.RESIZE_MODES,
                      value=common.RESIZE_MODES[0], type="index")
    denoise = gr.Slider(label="Denoising strength", elem_id=f"{tab}_denoising_strength", minimum=0, maximum=1,
                        step=0.01, value=0.75)
    return {"init_image": image, "resize_mode": resize, "denoising_strength": denoise}


def require_init_image(own: dict, fields: dict) -> dict:
    """img2img needs an init image; say so instead of silently running txt2img."""
    if fields.get("init_image") is None:
        raise InvalidRequest("Drop, paste or upload an image first.", field="init_image")
    return fields


def build_img2img_tab(services, checkpoint) -> GenerationTab:
    """Build the tab's widgets (inside a gr.Tab) and wire Generate to an img2img job."""
    return build_generation_tab("img2img", services, checkpoint, build_inputs=build_img2img_inputs,
                                extra_fields=require_init_image)
