"""The inpaint tab: paint the mask with a brush on the image (or upload a black-and-white mask)."""
import gradio as gr
from PIL import Image, ImageChops

from webui.schemas import InvalidRequest
from webui.ui import common
from webui.ui.generation import GenerationTab, build_generation_tab
from webui.ui.capped_images import capped


#: The editor's own starting brush size ("auto" means 25 in gradio's editor), shown on the slider.
DEFAULT_BRUSH_SIZE = 25


def brush_size_for(width: int, height: int) -> int:
    """A brush relative to the picture: about 1/20 of its longer side, within the slider's range."""
    return max(2, min(200, round(max(width, height) / 20)))


def editor_with_picture(image) -> tuple[gr.ImageEditor, int]:
    """An editor update holding ``image`` (nothing painted) with a brush sized to it, and that size."""
    size = brush_size_for(*image.size)
    value = {"background": image, "layers": [], "composite": image}
    return gr.ImageEditor(value=value, brush=mask_brush(size)), size


def mask_brush(size: int = DEFAULT_BRUSH_SIZE) -> gr.Brush:
    """Half-transparent white, one fixed colour (no colour button): the picture shows under the mask."""
    return gr.Brush(colors=[("#ffffff", 0.5)], default_color=("#ffffff", 0.5), color_mode="fixed",
                    default_size=size)


def build_inpaint_inputs(tab: str = "inpaint") -> dict:
    """The editor, the brush size, the optional mask upload and A1111's inpaint options, by name."""
    editor = capped(gr.ImageEditor(
        label="Image and mask: paint over what should change", elem_id=f"{tab}_editor", type="pil",
        sources=["upload", "clipboard"], image_mode="RGBA", height=420, transforms=(), brush=mask_brush(),
        layers=gr.LayerOptions(allow_additional_layers=False), format="png",
    ))
    # Only the user's own moves reach the editor, and no event reads the editor while a picture loads into it:
    # an upload handler with the editor as input lost the picture in a CI run (a race inside the editor).
    brush_size = gr.Slider(label="Brush size (pixels of the picture)", elem_id=f"{tab}_brush_size", minimum=1,
                           maximum=200, step=1, value=DEFAULT_BRUSH_SIZE)
    brush_size.input(lambda size: gr.ImageEditor(brush=mask_brush(int(size))), inputs=[brush_size],
                     outputs=[editor], show_progress="hidden")
    with gr.Accordion("Upload a mask instead (white = change)", open=False):
        mask = capped(gr.Image(label="Mask", elem_id=f"{tab}_mask_upload", type="pil", image_mode="L",
                               sources=["upload", "clipboard"], height=200, format="png"))
    with gr.Row():
        blur = gr.Slider(label="Mask blur", elem_id=f"{tab}_mask_blur", minimum=0, maximum=64, step=1, value=4)
        mode = gr.Radio(label="Mask mode", elem_id=f"{tab}_mask_mode", choices=common.MASK_MODES,
                        value=common.MASK_MODES[0], type="index")
    fill = gr.Radio(label="Masked content", elem_id=f"{tab}_inpainting_fill", choices=common.MASKED_CONTENT,
                    value="original", type="index")
    with gr.Row():
        area = gr.Radio(label="Inpaint area", elem_id=f"{tab}_inpaint_area", choices=common.INPAINT_AREAS,
                        value=common.INPAINT_AREAS[0], type="index")
        padding = gr.Slider(label="Only masked padding, pixels", elem_id=f"{tab}_padding", minimum=0,
                            maximum=256, step=4, value=32)
    resize = gr.Radio(label="Resize mode", elem_id=f"{tab}_resize_mode", choices=common.RESIZE_MODES,
                      value=common.RESIZE_MODES[0], type="index")
    denoise = gr.Slider(label="Denoising strength", elem_id=f"{tab}_denoising_strength", minimum=0, maximum=1,
                        step=0.01, value=0.75)
    return {
        "editor": editor, "mask_upload": mask, "inpaint_area": area, "mask_blur": blur,
        "inpainting_mask_invert": mode, "inpainting_fill": fill, "inpaint_full_res_padding": padding,
        "resize_mode": resize, "denoising_strength": denoise, "_brush_size": brush_size,
    }


def mask_from_layers(layers, size: tuple[int, int]) -> Image.Image:
    """White where any painted layer has paint (alpha > 0), black elsewhere, at the image's size."""
    mask = Image.new("L", size, 0)
    for layer in layers or []:
        if layer is None:
            continue
        layer = layer.convert("RGBA")
        if layer.size != size:
            layer = layer.resize(size, Image.NEAREST)
        alpha = layer.getchannel("A").point(lambda a: 255 if a > 0 else 0)
        mask = ImageChops.lighter(mask, alpha)
    return mask


def inpaint_fields(own: dict, fields: dict) -> dict:
    """Init image from the editor's background; mask from the upload if given, else from the paint."""
    editor = own.get("editor") or {}
    background = editor.get("background") if isinstance(editor, dict) else None
    if background is None:
        raise InvalidRequest("Drop, paste or upload an image to inpaint first.", field="init_image")
    if background.mode == "RGBA":
        flat = Image.new("RGB", background.size, (255, 255, 255))
        flat.paste(background, mask=background.getchannel("A"))
        background = flat
    else:
        background = background.convert("RGB")
    uploaded = own.get("mask_upload")
    if uploaded is not None:
        mask = uploaded.convert("L").point(lambda v: 255 if v >= 128 else 0)
    else:
        mask = mask_from_layers(editor.get("layers"), background.size)
    fields = dict(fields)
    fields["init_image"] = background
    fields["mask"] = mask
    fields["inpaint_full_res"] = int(own.get("inpaint_area") or 0) == 1
    return fields


def build_inpaint_tab(services, checkpoint) -> GenerationTab:
    """Build the tab's widgets (inside a gr.Tab) and wire Generate to an inpaint (img2img + mask) job."""
    return build_generation_tab("inpaint", services, checkpoint, build_inputs=build_inpaint_inputs,
                                extra_fields=inpaint_fields)
