"""The Extras tab: upscale and restore faces on one image, uploaded files, or a server folder.

Batch from a folder reads images from a folder on the server. To keep a browser
from reading arbitrary server paths, the folder must resolve inside the outputs
folder or one of ``settings.extra["extras_input_dirs"]`` (paths app.py may add).
"""
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from webui.schemas import ExtrasRequest, InvalidRequest
from webui.security.folders import allowed_folders, checked_folder
from webui.ui import common, results
from webui.ui.capped_images import DEFAULT_PIXEL_LIMIT, capped

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
SOURCES = ["Single image", "Batch process", "Batch from directory"]


@dataclass
class ExtrasTab:
    image: gr.Image
    files: gr.File
    folder: gr.Textbox
    source: gr.State
    fields: dict
    panel: results.ResultPanel
    run: gr.Button


def allowed_input_dirs(settings) -> list[Path]:
    """Folders a "batch from directory" path may lie in."""
    return allowed_folders(settings)


def images_from_folder(settings, folder: str) -> tuple[list[Image.Image], list[str]]:
    """Images of a server folder, if the folder is inside an allowed folder (InvalidRequest otherwise)."""
    path = checked_folder(settings, folder, "input_dir")
    images, names = [], []
    for file in sorted(path.iterdir()):
        if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
            images.append(_decode_capped(file))
            names.append(file.name)
    if not images:
        raise InvalidRequest(f"No images in {path}.", field="input_dir")
    return images, names


def _decode_capped(path: Path) -> Image.Image:
    """An RGB image from ``path``, refused (InvalidRequest) before decoding when over the pixel limit."""
    with Image.open(path) as image:
        if image.width * image.height > DEFAULT_PIXEL_LIMIT:
            raise InvalidRequest(f"{path.name} is {image.width}x{image.height} pixels, over this server's limit "
                                 f"of {DEFAULT_PIXEL_LIMIT} pixels", field="image")
        return image.convert("RGB")


def images_from_files(files) -> tuple[list[Image.Image], list[str]]:
    images, names = [], []
    for item in files or []:
        path = Path(getattr(item, "name", item))
        try:
            images.append(_decode_capped(path))
        except OSError:
            raise InvalidRequest(f"Not an image: {path.name}", field="image_folder") from None
        names.append(path.name)
    if not images:
        raise InvalidRequest("Upload one or more images first.", field="image_folder")
    return images, names


def build_extras_tab(services) -> ExtrasTab:
    """Build the tab (inside a gr.Tab) and wire its button to an "extras" job."""
    upscalers = common.upscaler_names(services)
    source = gr.State(SOURCES[0])
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            with gr.Tabs(elem_id="extras_sources"):
                with gr.Tab("Single Image", elem_id="extras_single_tab") as single_tab:
                    image = capped(gr.Image(label="Source", elem_id="extras_image", type="pil", image_mode="RGB",
                                            sources=["upload", "clipboard"], height=320, format="png"))
                with gr.Tab("Batch Process", elem_id="extras_batch_tab") as batch_tab:
                    files = gr.File(label="Batch Process", elem_id="extras_image_batch", file_count="multiple",
                                    file_types=["image"])
                with gr.Tab("Batch from Directory", elem_id="extras_dir_tab") as dir_tab:
                    folder = gr.Textbox(label="Input directory (inside the outputs folder)", elem_id="extras_batch_input_dir")
            run = gr.Button("Generate", elem_id="extras_generate", variant="primary")
            fields: dict = {}
            with gr.Row():
                fields["resize_mode"] = gr.Radio(label="Resize", elem_id="extras_resize_mode",
                                                 choices=["Scale by", "Scale to"], value="Scale by", type="index")
            with gr.Row():
                fields["upscaling_resize"] = gr.Slider(label="Resize", elem_id="extras_upscaling_resize",
                                                       minimum=1.0, maximum=8.0, step=0.05, value=2.0)
                fields["upscaling_resize_w"] = gr.Number(label="Width", elem_id="extras_upscaling_resize_w", value=512, precision=0)
                fields["upscaling_resize_h"] = gr.Number(label="Height", elem_id="extras_upscaling_resize_h", value=512, precision=0)
                fields["upscaling_crop"] = gr.Checkbox(label="Crop to fit", elem_id="extras_upscaling_crop", value=True)
            with gr.Row():
                fields["upscaler_1"] = gr.Dropdown(label="Upscaler 1", elem_id="extras_upscaler_1", choices=upscalers,
                                                   value="Lanczos" if "Lanczos" in upscalers else upscalers[0])
                fields["upscaler_2"] = gr.Dropdown(label="Upscaler 2", elem_id="extras_upscaler_2", choices=upscalers, value="None")
                fields["extras_upscaler_2_visibility"] = gr.Slider(label="Upscaler 2 visibility", elem_id="extras_upscaler_2_visibility",
                                                                   minimum=0, maximum=1, step=0.001, value=0)
            with gr.Row():
                fields["gfpgan_visibility"] = gr.Slider(label="GFPGAN visibility", elem_id="extras_gfpgan_visibility",
                                                        minimum=0, maximum=1, step=0.001, value=0)
                fields["codeformer_visibility"] = gr.Slider(label="CodeFormer visibility", elem_id="extras_codeformer_visibility",
                                                            minimum=0, maximum=1, step=0.001, value=0)
                fields["codeformer_weight"] = gr.Slider(label="CodeFormer weight (0 = maximum effect)", elem_id="extras_codeformer_weight",
                                                        minimum=0, maximum=1, step=0.001, value=0)
            fields["upscale_first"] = gr.Radio(label="Order", elem_id="extras_order",
                                               choices=["Upscale, then restore faces", "Restore faces, then upscale"],
                                               value="Upscale, then restore faces", type="index")
        with gr.Column(scale=1):
            panel = results.build_result_panel("extras", controls=False)
    for tab_widget, name in ((single_tab, SOURCES[0]), (batch_tab, SOURCES[1]), (dir_tab, SOURCES[2])):
        tab_widget.select(lambda n=name: n, outputs=[source], queue=False, show_progress="hidden")

    numeric = {"resize_mode": int, "upscaling_resize": float, "upscaling_resize_w": int, "upscaling_resize_h": int,
               "extras_upscaler_2_visibility": float, "gfpgan_visibility": float, "codeformer_visibility": float,
               "codeformer_weight": float}

    def run_extras(values: dict, request: gr.Request):
        def build():
            named = {}
            for name, comp in fields.items():
                value = values.get(comp)
                if name in numeric:
                    if value is None:
                        raise InvalidRequest(f"{name} needs a number", field=name)
                    value = numeric[name](round(value) if numeric[name] is int else value)
                named[name] = value
            named["upscaling_crop"] = bool(named["upscaling_crop"])
            named["upscale_first"] = named["upscale_first"] == 0
            chosen = values.get(source)
            if chosen == SOURCES[1]:
                images, names = images_from_files(values.get(files))
            elif chosen == SOURCES[2]:
                caller = common.caller(request)
                if caller.user is not None and not caller.admin:  # the outputs folder holds every user's images
                    raise InvalidRequest("Only an admin may process a folder of the server.", field="input_dir")
                images, names = images_from_folder(services.settings, values.get(folder))
            else:
                if values.get(image) is None:
                    raise InvalidRequest("Drop, paste or upload an image first.", field="image")
                images, names = [values[image]], []
            return ExtrasRequest(images=images, names=names, **named)

        yield from results.submit_and_follow(panel, services, "extras", build, request)

    run.click(run_extras, inputs={*fields.values(), image, files, folder, source}, outputs=panel.outputs,
              concurrency_limit=None, show_progress="minimal")
    return ExtrasTab(image, files, folder, source, fields, panel, run)
