"""The top bar: checkpoint dropdown (A1111 titles) with a refresh button, and a message line."""
from dataclasses import dataclass

import gradio as gr

from webui.ui import common


@dataclass
class TopBar:
    checkpoint: gr.Dropdown
    refresh: gr.Button
    message: gr.Markdown


def build_topbar(services) -> TopBar:
    """Create the bar; choosing a checkpoint loads it now, refresh rescans the model folders."""
    with gr.Row(elem_id="topbar"):
        checkpoint = gr.Dropdown(
            label="Stable Diffusion checkpoint", elem_id="setting_sd_model_checkpoint",
            choices=common.checkpoint_titles(services), value=common.current_checkpoint_title(services),
            scale=4, allow_custom_value=False,
        )
        refresh = gr.Button("🔄", elem_id="refresh_sd_model_checkpoint", scale=0, min_width=40)
        message = gr.Markdown("", elem_id="topbar_message")
    bar = TopBar(checkpoint, refresh, message)

    def select(title):
        if not title:
            return ""
        try:
            info = services.models.select_checkpoint(title)
        except Exception as exc:
            message_text = common.readable_error(exc)
            gr.Warning(message_text)
            return f"**Could not load the checkpoint:** {message_text}"
        loaded = getattr(info, "title", title)
        if services.options is not None:
            try:
                services.options.update({"sd_model_checkpoint": loaded})
            except Exception:  # the option is informative; a failure here must not hide the load
                pass
        return f"Loaded {loaded}."

    def refresh_list(current):
        try:
            services.catalog.refresh()
        except Exception as exc:
            message_text = common.readable_error(exc)
            gr.Warning(message_text)
            return gr.Dropdown(), f"**Could not rescan the models:** {message_text}"
        titles = common.checkpoint_titles(services)
        value = current if current in titles else common.current_checkpoint_title(services)
        return gr.Dropdown(choices=titles, value=value), f"Found {len(titles)} checkpoint(s)."

    # A user who changes their mind while a checkpoint loads gets the last one chosen.
    checkpoint.input(select, inputs=[checkpoint], outputs=[message], show_progress="minimal", trigger_mode="always_last")
    refresh.click(refresh_list, inputs=[checkpoint], outputs=[checkpoint, message], show_progress="minimal")
    return bar
