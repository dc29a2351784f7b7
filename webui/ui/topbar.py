"""The top bar: checkpoint dropdown (A1111 titles) with a refresh button, and a message line."""
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from webui.jobs.follow import submit_and_wait
from webui.schemas import MODEL_JOB_KIND, ModelAction
from webui.schemas import JobStatus, ModelLoadError
from webui.ui import common


@dataclass
class TopBar:
    checkpoint: gr.Dropdown
    refresh: gr.Button
    message: gr.Markdown
    vae: gr.Dropdown | None = None


def vae_choices(services) -> list[str]:
    """A1111's SD VAE choices: Automatic (same-named VAE beside the checkpoint), None (its own), then files."""
    try:
        names = [info.name for info in services.catalog.vaes()]
    except Exception:
        names = []
    return ["Automatic", "None", *names]


def current_vae(services) -> str:
    choice = services.options.get("sd_vae") if services.options is not None else None
    return choice if choice in vae_choices(services) else "Automatic"


def build_topbar(services, build_more: Callable[[gr.Markdown], object] | None = None) -> tuple[TopBar, object]:
    """Create the bar; choosing a checkpoint queues its load, refresh rescans the model folders.

    ``build_more(message)`` adds more widgets to the same row (A1111's quicksettings sit beside the
    checkpoint); its result is returned beside the bar.
    """
    message = gr.Markdown("", elem_id="topbar_message", render=False)
    with gr.Row(elem_id="topbar"):
        checkpoint = gr.Dropdown(
            label="Stable Diffusion checkpoint", elem_id="setting_sd_model_checkpoint",
            choices=common.checkpoint_titles(services), value=common.current_checkpoint_title(services),
            scale=4, allow_custom_value=False,
        )
        refresh = gr.Button("↻", elem_id="refresh_sd_model_checkpoint", scale=0, min_width=40)
        vae = gr.Dropdown(label="SD VAE", elem_id="setting_sd_vae", choices=vae_choices(services),
                          value=current_vae(services), scale=2, allow_custom_value=False)
        more = build_more(message) if build_more else None
    message.render()
    bar = TopBar(checkpoint, refresh, message, vae)

    def select_vae(choice):
        """The choice applies to every following job (A1111's sd_vae option)."""
        try:
            services.options.update({"sd_vae": choice or "Automatic"})
        except Exception as exc:
            common.warn(common.readable_error(exc))
            return f"**Could not set the VAE:** {common.markdown_text(common.readable_error(exc))}"
        return f"VAE: {common.markdown_text(choice)}. It applies from the next image on."

    async def select(title, request: gr.Request):
        """Queue the switch (it runs after the jobs queued before it) and await it without holding a thread."""
        if not title:
            return ""
        try:
            job = await submit_and_wait(services.queue, MODEL_JOB_KIND, ModelAction("load", title),
                                        owner=common.owner_of(request))
            if job.status != JobStatus.SUCCEEDED:
                raise ModelLoadError(job.error or f"the checkpoint switch was {job.status.value}")
        except Exception as exc:
            message_text = common.readable_error(exc)
            common.warn(message_text)
            return f"**Could not load the checkpoint:** {common.markdown_text(message_text)}"
        loaded = (job.result if isinstance(job.result, dict) else {}).get("checkpoint") or title
        if services.options is not None:
            try:
                services.options.update({"sd_model_checkpoint": loaded})
            except Exception:  # the option is informative; a failure here must not hide the load
                pass
        return f"Loaded {common.markdown_text(loaded)}."

    def refresh_list(current):
        try:
            services.catalog.refresh()
        except Exception as exc:
            message_text = common.readable_error(exc)
            common.warn(message_text)
            return gr.Dropdown(), gr.Dropdown(), f"**Could not rescan the models:** {common.markdown_text(message_text)}"
        titles = common.checkpoint_titles(services)
        value = current if current in titles else common.current_checkpoint_title(services)
        vaes = gr.Dropdown(choices=vae_choices(services), value=current_vae(services))
        return gr.Dropdown(choices=titles, value=value), vaes, f"Found {len(titles)} checkpoint(s)."

    # A user who changes their mind while a checkpoint loads gets the last one chosen.
    checkpoint.input(select, inputs=[checkpoint], outputs=[message], show_progress="minimal", trigger_mode="always_last")
    refresh.click(refresh_list, inputs=[checkpoint], outputs=[checkpoint, vae, message], show_progress="minimal")
    vae.input(select_vae, inputs=[vae], outputs=[message], show_progress="hidden")
    return bar, more
