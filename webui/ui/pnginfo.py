"""The PNG Info tab: drop an image, read the generation parameters stored in it, send them to txt2img."""
import html
from dataclasses import dataclass

import gradio as gr
from PIL import Image

from webui.ui import common
from webui.ui.capped_images import capped


@dataclass
class PngInfoTab:
    image: gr.Image
    parameters: gr.Textbox
    table: gr.HTML
    send_txt2img: gr.Button
    send_img2img: gr.Button
    reproduce: gr.Button | None = None
    send_inpaint: gr.Button | None = None
    send_extras: gr.Button | None = None


def read_parameters(path) -> str:
    """The infotext stored in an image file ("" when it has none)."""
    with Image.open(path) as image:
        image.load()
        try:
            from webui.images import read_infotext
        except ImportError:  # before webui.images exists: the PNG chunk A1111 writes
            return image.info.get("parameters", "") or ""
        return read_infotext(image) or ""


def infotext_fields(text: str) -> dict:
    """GenerationRequest fields from infotext (prompt only if the parser is not there)."""
    if not text:
        return {}
    try:
        from webui.infotext import infotext_to_request_fields, parse_infotext
    except ImportError:
        prompt, _, rest = text.partition("\nNegative prompt: ")
        return {"prompt": prompt.strip()}
    from webui.ui.addons import infotext_addon_fields
    from webui.ui.controlnet import infotext_unit_fields

    parsed = parse_infotext(text)
    return {**infotext_to_request_fields(parsed), **infotext_addon_fields(parsed), **infotext_unit_fields(parsed)}


def parameters_html(text: str) -> str:
    """The parsed fields as a small table, so users see what will be sent."""
    if not text:
        return "<p>No generation parameters found in this image.</p>"
    try:
        from webui.infotext import parse_infotext

        parsed = parse_infotext(text)
    except Exception:
        return "<pre>" + html.escape(text) + "</pre>"
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in parsed.items())
    return f"<table id='pnginfo_table'>{rows}</table>"


def build_pnginfo_tab(services=None) -> PngInfoTab:
    """Build the tab (inside a gr.Tab); the send buttons are wired by the layout, Reproduce here."""
    with gr.Row(equal_height=False):
        with gr.Column():
            # filepath + no mode conversion: the handler gets the uploaded file itself, chunks intact.
            image = capped(gr.Image(label="Source", elem_id="pnginfo_image", type="filepath", image_mode=None,
                                    sources=["upload", "clipboard"], height=360, format="png"))
        with gr.Column():
            parameters = gr.Textbox(label="Parameters", elem_id="pnginfo_parameters", lines=6, interactive=False)
            table = gr.HTML(elem_id="pnginfo_html")
            with gr.Row():
                send_txt2img = gr.Button("Send to txt2img", elem_id="pnginfo_send_to_txt2img")
                send_img2img = gr.Button("Send to img2img", elem_id="pnginfo_send_to_img2img")
                send_inpaint = gr.Button("Send to inpaint", elem_id="pnginfo_send_to_inpaint")
                send_extras = gr.Button("Send to extras", elem_id="pnginfo_send_to_extras")
                reproduce = gr.Button("Reproduce", elem_id="pnginfo_reproduce", variant="primary") \
                    if services is not None else None
    if reproduce is not None:
        with gr.Row(equal_height=False, elem_id="pnginfo_reproduction"):
            reproduced = gr.Image(label="Reproduced", elem_id="pnginfo_reproduced", interactive=False, height=360)
            difference = gr.Image(label="Difference (x4)", elem_id="pnginfo_difference", interactive=False,
                                  height=360)
            verdict = gr.Markdown(elem_id="pnginfo_reproduce_result")

        def run_reproduction(path, request: gr.Request):
            from webui.ui.reproduce import reproduce as follow

            yield from follow(services, path, common.owner_of(request))

        reproduce.click(run_reproduction, inputs=[image], outputs=[verdict, reproduced, difference],
                        concurrency_limit=None, show_progress="minimal")

    def show(path):
        if not path:
            return "", ""
        try:
            text = read_parameters(path)
        except Exception as exc:
            message = common.readable_error(exc)
            common.warn(message)
            return "", f"<p>Could not read the image: {html.escape(message)}</p>"
        return text, parameters_html(text)

    image.change(show, inputs=[image], outputs=[parameters, table], show_progress="hidden")
    return PngInfoTab(image, parameters, table, send_txt2img, send_img2img, reproduce, send_inpaint, send_extras)
