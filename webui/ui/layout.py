"""The whole page: top bar, one tab per mode, the queue panel, and the Send-to wiring between tabs."""
import gradio as gr

from webui.ui import (autocomplete, clip_skip, common, files, page_assets, pnginfo, prompt_tools, quicksettings,
                      results, tooltips, ui_defaults)
from webui.ui.extras import build_extras_tab
from webui.ui.history import build_history_tab
from webui.ui.img2img import build_img2img_tab
from webui.ui.inpaint import build_inpaint_tab, editor_with_picture
from webui.ui.pnginfo import build_pnginfo_tab
from webui.ui.queue_panel import build_queue_panel
from webui.ui import settings
from webui.ui.settings import build_settings_tab
from webui.ui.topbar import build_topbar
from webui.ui.txt2img import build_txt2img_tab

CSS = """
#topbar { align-items: end; }
#queue_jobs { width: 100%; border-collapse: collapse; }
#queue_jobs td, #queue_jobs th { padding: 2px 8px; border-bottom: 1px solid #8884; text-align: left; }
#queue_jobs tr.queue-mine td:first-child { font-weight: bold; }
"""

# Fields that never travel with "Send to": model choice and hires settings belong to the source tab.
NOT_SENT = {"checkpoint", "styles", "init_image", "mask", "denoising_strength", "enable_hr", "hr_scale",
            "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y"}


def build_ui(services) -> gr.Blocks:
    """Build the gradio Blocks for ``services``; app.py mounts it (see ``mount_ui``)."""
    with gr.Blocks(title="Stable Diffusion web UI", analytics_enabled=False) as demo:
        bar, quick = build_topbar(services, lambda message: quicksettings.build_quicksettings(services, message))
        gr.Markdown(common.DEMO_NOTE, elem_id="demo_note")
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                txt2img = build_txt2img_tab(services, bar.checkpoint)
            with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"):
                img2img = build_img2img_tab(services, bar.checkpoint)
            with gr.Tab("Inpaint", id="inpaint", elem_id="tab_inpaint"):
                inpaint = build_inpaint_tab(services, bar.checkpoint)
            with gr.Tab("Extras", id="extras", elem_id="tab_extras"):
                extras = build_extras_tab(services)
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                png = build_pnginfo_tab(services)
            with gr.Tab("History", id="history", elem_id="tab_history"):
                history = build_history_tab(services)
            with gr.Tab("Queue", id="queue", elem_id="tab_queue"):
                queue = build_queue_panel(services)
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                settings_tab = build_settings_tab(services)
        _wire_send_to(tabs, txt2img, img2img, inpaint, extras, png, queue, history)
        _wire_native_size(services, bar.checkpoint, [txt2img, img2img, inpaint])
        for tab in (txt2img, img2img, inpaint):
            tab.wire_resume(demo, services)
        quicksettings.wire_clip_skip(quick, services, [txt2img, img2img, inpaint])
        clip_skip.wire_clip_skip_limit(services, bar.checkpoint, [txt2img, img2img, inpaint])
        ui_defaults.wire_ui_defaults(demo, services, settings_tab, [txt2img, img2img, inpaint])
        # The page scripts run as one load event: stored theme, button tooltips, PNG drop on prompts, autocomplete.
        scripts = [quicksettings.THEME_RESTORE_JS, tooltips.page_script(), prompt_tools.PNG_DROP_JS,
                   autocomplete.page_script(autocomplete.completion_names(services))]
        demo.load(None, js="() => { " + "".join(f"({script})(); " for script in scripts) + "}")

        def on_load():
            titles = common.checkpoint_titles(services)
            return gr.Dropdown(choices=titles, value=common.current_checkpoint_title(services))

        demo.load(on_load, outputs=[bar.checkpoint], show_progress="hidden")
        # One load event refreshes the Settings tab and the quicksettings from the options store.
        shown = [*settings_tab.widgets, *quick]
        demo.load(lambda: settings.current_values(services.options, shown),
                  outputs=[*settings_tab.widgets.values(), *quick.values()], show_progress="hidden")
    return demo


def mount_ui(app, services, path: str = "/"):
    """Build the UI and mount it on a FastAPI ``app`` at ``path`` (with the page's CSS).

    gradio keeps uploads and the images it shows in our own folder
    (Settings.gradio_temp_dir), accepts uploads up to UPLOAD_LIMIT, and refuses
    any file path a request names that is not an upload (see files.py).
    """
    files.use_own_temp_dir(services.settings.gradio_temp_dir)
    demo = build_ui(services)
    mounted = gr.mount_gradio_app(app, demo, path=path, css=CSS + page_assets.stylesheet(),
                                  head=page_assets.head_html(), footer_links=[], show_error=True,
                                  max_file_size=files.upload_limit(services.settings),
                                  allowed_paths=[], blocked_paths=files.blocked_paths(services.settings))
    files.check_paths_like_a_launched_app(demo)
    return mounted


def _wire_native_size(services, checkpoint, panels) -> None:
    """Choosing a checkpoint sets every tab's size to the resolution it was trained at (64x64 for the demo)."""
    sliders = [panel.fields[name] for panel in panels for name in ("width", "height")]

    def native(title):
        width, height = common.native_size(services, title)
        return [width, height] * len(panels)

    checkpoint.input(native, inputs=[checkpoint], outputs=sliders, show_progress="hidden")


def _carried_fields(state, target) -> dict:
    """Target-tab updates from the selected image's infotext, by request field name."""
    fields = pnginfo.infotext_fields(results.selected_infotext(state))
    return {target.fields[name]: value for name, value in fields.items()
            if name in target.fields and name not in NOT_SENT}


def _wire_send_to(tabs, txt2img, img2img, inpaint, extras, png, queue, history) -> None:
    # The History tab's selection is held in a result-panel state, so its buttons act like a panel's.
    panels = [txt2img.panel, img2img.panel, inpaint.panel, extras.panel, queue.panel, history]
    img2img_image = img2img.inputs["init_image"]
    editor, brush_size = inpaint.inputs["editor"], inpaint.inputs["_brush_size"]
    carry_img2img = [c for n, c in img2img.fields.items() if n not in NOT_SENT]
    carry_inpaint = [c for n, c in inpaint.fields.items() if n not in NOT_SENT]

    def to_img2img(state):
        image = results.selected_image(state)
        if image is None:
            gr.Warning("There is no image to send yet.")
            return {}
        updates = _carried_fields(state, img2img)
        updates.update({img2img_image: image, img2img.fields["width"]: image.width,
                        img2img.fields["height"]: image.height, tabs: gr.Tabs(selected="img2img")})
        return updates

    def to_inpaint(state):
        image = results.selected_image(state)
        if image is None:
            gr.Warning("There is no image to send yet.")
            return {}
        updates = _carried_fields(state, inpaint)
        picture, brush = editor_with_picture(image)  # the brush sized to the picture
        updates.update({editor: picture, brush_size: brush,
                        inpaint.fields["width"]: image.width, inpaint.fields["height"]: image.height,
                        tabs: gr.Tabs(selected="inpaint")})
        return updates

    def to_extras(state):
        image = results.selected_image(state)
        if image is None:
            gr.Warning("There is no image to send yet.")
            return {}
        return {extras.image: image, tabs: gr.Tabs(selected="extras")}

    for panel in panels:
        panel.send_img2img.click(to_img2img, inputs=[panel.state], outputs=[img2img_image, tabs, *carry_img2img],
                                 show_progress="hidden")
        panel.send_inpaint.click(to_inpaint, inputs=[panel.state], outputs=[editor, brush_size, tabs, *carry_inpaint],
                                 show_progress="hidden")
        panel.send_extras.click(to_extras, inputs=[panel.state], outputs=[extras.image, tabs], show_progress="hidden")

    carry_txt2img = [c for n, c in txt2img.fields.items() if n not in {"checkpoint", "init_image", "mask"}]

    def png_to_txt2img(text):
        fields = pnginfo.infotext_fields(text)
        updates = {txt2img.fields[n]: v for n, v in fields.items() if n in txt2img.fields and n != "checkpoint"}
        updates[tabs] = gr.Tabs(selected="txt2img")
        return updates

    def png_to_img2img(path, text):
        updates = {img2img.fields[n]: v for n, v in pnginfo.infotext_fields(text).items()
                   if n in img2img.fields and n not in NOT_SENT}
        if path:
            from PIL import Image

            with Image.open(path) as image:
                updates[img2img_image] = image.convert("RGB")
        updates[tabs] = gr.Tabs(selected="img2img")
        return updates

    png.send_txt2img.click(png_to_txt2img, inputs=[png.parameters], outputs=[tabs, *carry_txt2img], show_progress="hidden")
    png.send_img2img.click(png_to_img2img, inputs=[png.image, png.parameters], outputs=[img2img_image, tabs, *carry_img2img],
                           show_progress="hidden")
    history.send_txt2img.click(png_to_txt2img, inputs=[history.infotext], outputs=[tabs, *carry_txt2img],
                               show_progress="hidden")

    def png_state(path, text) -> dict:
        """A result-panel state holding the PNG Info image, so the panel handlers can send it."""
        if not path:
            return {}
        from PIL import Image

        with Image.open(path) as image:
            return {"images": [image.convert("RGB")], "infotexts": [text or ""], "selected": 0}

    png.send_inpaint.click(lambda path, text: to_inpaint(png_state(path, text)), inputs=[png.image, png.parameters],
                           outputs=[editor, brush_size, tabs, *carry_inpaint], show_progress="hidden")
    png.send_extras.click(lambda path, text: to_extras(png_state(path, text)), inputs=[png.image, png.parameters],
                          outputs=[extras.image, tabs], show_progress="hidden")
