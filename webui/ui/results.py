"""The output side of a tab: status line, progress bar, live preview, gallery, infotext, Interrupt/Skip, Send-to.

``follow_job`` is the generator every Generate handler ends in: it wakes on the
queue's notifications for the job it submitted and yields updates, so the browser sees the
position in the queue, step k/S, image i/n and the preview while the worker runs.
``resume_jobs`` does the same on page load for the jobs this browser left
running or queued (a reloaded page, a second tab with the same identity cookie).
"""
from dataclasses import dataclass

import gradio as gr

from webui.jobs.follow import job_updates
from webui.ui import common, progress_view

# Room for the gallery with the Send-to buttons and the infotext still on a 1440x900 screen, never under 256 px.
GALLERY_HEIGHT = "max(256px, calc(100vh - 640px))"


def empty_result() -> dict:
    """What a panel's state holds: the shown images, their infotexts and the selected index."""
    return {"images": [], "infotexts": [], "seeds": [], "selected": 0, "job_id": None}


@dataclass
class ResultPanel:
    """The widgets under a Generate button; ``tab`` prefixes every elem_id."""

    tab: str
    status: gr.Markdown
    preview: gr.Image
    gallery: gr.Gallery
    infotext: gr.Textbox
    state: gr.State
    interrupt: gr.Button
    skip: gr.Button
    send_img2img: gr.Button
    send_inpaint: gr.Button
    send_extras: gr.Button
    progress: gr.HTML | None = None

    @property
    def outputs(self) -> list:
        return [self.status, self.preview, self.gallery, self.infotext, self.state, self.progress]


def build_result_panel(tab: str, *, controls: bool = True, buttons: tuple | None = None) -> ResultPanel:
    """Create the output column of a tab (call inside a gr.Column).

    ``buttons`` are (Interrupt, Skip) made elsewhere (beside Generate); without them the panel makes its own.
    """
    if buttons is None:
        with gr.Row(visible=controls):
            interrupt = gr.Button("Interrupt", elem_id=f"{tab}_interrupt", variant="stop", size="sm")
            skip = gr.Button("Skip", elem_id=f"{tab}_skip", size="sm")
    else:
        interrupt, skip = buttons
    progress = gr.HTML(progress_view.IDLE, elem_id=f"{tab}_progress", elem_classes=["webui-progress-box"],
                       padding=False)
    status = gr.Markdown("", elem_id=f"{tab}_status")
    preview = gr.Image(label="Preview", elem_id=f"{tab}_preview", interactive=False, visible=False, type="pil",
                       height=256, elem_classes=["webui-live-preview"])
    # Whole images (contain, never cropped), the first shown large; the page script draws small ones pixelated.
    gallery = gr.Gallery(
        label="Output", elem_id=f"{tab}_gallery", type="pil", format="png", columns=2, height=GALLERY_HEIGHT,
        interactive=False, preview=True, object_fit="contain", buttons=["download", "fullscreen"],
        elem_classes=["webui-gallery"],
    )
    with gr.Row():
        send_img2img = gr.Button("Send to img2img", elem_id=f"{tab}_send_to_img2img", size="sm")
        send_inpaint = gr.Button("Send to inpaint", elem_id=f"{tab}_send_to_inpaint", size="sm")
        send_extras = gr.Button("Send to extras", elem_id=f"{tab}_send_to_extras", size="sm")
    infotext = gr.Textbox(label="Generation parameters", elem_id=f"{tab}_infotext", interactive=False, lines=4)
    state = gr.State(empty_result())
    panel = ResultPanel(tab, status, preview, gallery, infotext, state, interrupt, skip, send_img2img, send_inpaint,
                        send_extras, progress=progress)
    gallery.select(_on_select, inputs=[state], outputs=[state, infotext], show_progress="hidden")
    return panel


def _on_select(state: dict, evt: gr.SelectData):
    state = dict(state or empty_result())
    index = evt.index if isinstance(evt.index, int) else 0
    state["selected"] = index
    infotexts = state.get("infotexts") or []
    return state, (infotexts[index] if 0 <= index < len(infotexts) else "")


def selected_image(state: dict | None):
    """The PIL image selected in a panel's gallery, or None."""
    if not state or not state.get("images"):
        return None
    images = state["images"]
    index = state.get("selected", 0)
    return images[index if 0 <= index < len(images) else 0]


def selected_seed(state: dict | None) -> int:
    """The seed of the selected image (♻️), or -1 when nothing was generated yet."""
    if not state or not state.get("seeds"):
        return -1
    seeds = state["seeds"]
    index = state.get("selected", 0)
    return int(seeds[index if 0 <= index < len(seeds) else 0])


def selected_infotext(state: dict | None) -> str:
    if not state or not state.get("infotexts"):
        return ""
    infotexts = state["infotexts"]
    index = state.get("selected", 0)
    return infotexts[index if 0 <= index < len(infotexts) else 0]


#: How long Interrupt and Skip wait for the job to end before saying they are on their way.
ACTION_SETTLE_SECONDS = 0.5


def wire_controls(panel: ResultPanel, services) -> None:
    """Interrupt and Skip act on the running job of this browser tab only."""

    def act(action: str, request: gr.Request):
        owner = common.owner_of(request)
        try:
            jobs = [j for j in services.queue.list(owner=owner) if not common.job_finished(j)]
        except Exception as exc:
            return f"**Error:** {common.markdown_text(common.readable_error(exc))}"
        running = [j for j in jobs if common.job_status(j) == "running"]
        if not running:
            return "Nothing of yours is running."
        job = running[0]
        try:
            getattr(services.queue, action)(job.id, owner=owner)
            # A job that stops at once has its final status streamed to the page already; this answer must not
            # arrive after it and put "Interrupting…" back over it.
            if services.queue.wait(job.id, timeout=ACTION_SETTLE_SECONDS).status.finished:
                return gr.skip()
        except Exception as exc:
            return f"**Error:** {common.markdown_text(common.readable_error(exc))}"
        return f"{'Interrupting' if action == 'interrupt' else 'Skipping the current image of'} job {short_id(job.id)}…"

    def interrupt(request: gr.Request):
        return act("interrupt", request)

    def skip(request: gr.Request):
        return act("skip", request)

    panel.interrupt.click(interrupt, outputs=[panel.status], queue=False, show_progress="hidden")
    panel.skip.click(skip, outputs=[panel.status], queue=False, show_progress="hidden")


def result_updates(panel: ResultPanel, job) -> dict:
    """The final updates for a finished job: gallery, first infotext, status, state."""
    status = common.job_status(job)
    result = common.job_result(job)
    images = list(getattr(result, "images", []) or [])
    infotexts = list(getattr(result, "infotexts", []) or [])
    warnings = list(getattr(result, "warnings", []) or [])
    seeds = list(getattr(result, "seeds", []) or [])
    state = {"images": images, "infotexts": infotexts, "seeds": seeds, "selected": 0, "job_id": getattr(job, "id", None)}
    if status == "succeeded":
        text = f"Done: {len(images)} image(s)."
    elif status == "interrupted":
        text = f"Interrupted: {len(images)} image(s), the last from where sampling stopped."
    elif status == "canceled":
        text = "Canceled."
    else:
        reason = getattr(job, "error", None) or "unknown error"
        text = f"**Error:** {common.markdown_text(reason)}"
        common.warn(reason)
    job_id = getattr(job, "id", None)
    if job_id:
        text += f" (job {short_id(job_id)})"
    if warnings:
        text += "  \n" + "  \n".join(f"⚠️ {common.markdown_text(w)}" for w in warnings)
    memory_plan = getattr(result, "memory_plan", "")
    for line in ([memory_plan] if memory_plan else []) + list(getattr(result, "notes", []) or []):
        text += f"  \nℹ️ {common.markdown_text(line)}"
    return {
        panel.status: text,
        panel.preview: gr.Image(value=None, visible=False),
        # Opened on the first image: shown whole in the gallery's height, the others as thumbnails under it.
        panel.gallery: gr.Gallery(value=images, selected_index=0 if images else None),
        panel.infotext: infotexts[0] if infotexts else "",
        panel.state: state,
        panel.progress: progress_view.progress_html(job),
    }


def short_id(job_id) -> str:
    """The first 8 characters of a job id: enough to tell jobs apart on screen."""
    return str(job_id)[:8]


def follow_job(panel: ResultPanel, services, job_id):
    """Yield progress updates for ``job_id`` until it finishes, then its results."""
    shown_preview = None
    shown_text = None  # written only when it changes, so a message from Interrupt/Skip stays readable
    shown_bar = None
    updates = job_updates(services.queue, job_id)  # the queue wakes this loop on each change: no polling
    while True:
        try:
            job = next(updates, None)
        except Exception as exc:
            yield {panel.status: f"**Error:** {common.markdown_text(common.readable_error(exc))}"}
            return
        if job is None:
            yield {panel.status: "**Error:** the job is gone from the queue."}
            return
        if common.job_finished(job):
            final = result_updates(panel, job)
            final[panel.progress] = progress_view.progress_html(job, notify=progress_view.notify_when_done(services))
            images = getattr(common.job_result(job), "images", None)
            if shown_preview is not None and not images and common.job_status(job) == "interrupted":
                final.pop(panel.preview)  # nothing was finished: the last preview stays on screen
            yield final
            return
        update = {}
        text = f"Job {short_id(job.id)}: {common.progress_text(job)}"
        if text != shown_text:
            shown_text = update[panel.status] = text
        bar = progress_view.progress_html(job)
        if bar != shown_bar:
            shown_bar = update[panel.progress] = bar
        preview = getattr(getattr(job, "progress", None), "preview", None)
        if preview is not None and preview is not shown_preview:
            shown_preview = preview
            update[panel.preview] = gr.Image(value=preview, visible=True)
        if update:
            yield update


def submit_and_follow(panel: ResultPanel, services, kind: str, build_request, request: gr.Request):
    """Build a request (errors become a message), submit it as this tab's job, and stream it."""
    try:
        job_request = build_request()
    except Exception as exc:
        message = common.readable_error(exc)
        common.warn(message)
        yield {panel.status: f"**Error:** {common.markdown_text(message)}"}
        return
    try:
        job = services.queue.submit(kind, job_request, owner=common.owner_of(request))
    except Exception as exc:
        message = common.readable_error(exc)
        common.warn(message)
        yield {panel.status: f"**Error:** {common.markdown_text(message)}"}
        return
    yield {panel.status: f"Job {short_id(job.id)}: submitted", panel.gallery: [], panel.infotext: ""}
    yield from follow_job(panel, services, job.id)


def resume_jobs(panel: ResultPanel, services, belongs, request: gr.Request):
    """Follow, one after the other, the unfinished jobs of this browser that ``belongs(job)`` to the panel's tab.

    Runs on page load: a reloaded page or a second tab of the same browser takes
    back the running job and then the queued ones, with progress, preview and result.
    """
    try:
        jobs = [job for job in services.queue.list(owner=common.owner_of(request))
                if not common.job_finished(job) and belongs(job)]
    except Exception as exc:
        yield {panel.status: f"**Error:** {common.markdown_text(common.readable_error(exc))}"}
        return
    for job in jobs:  # the running job first, then the queue in order
        yield {panel.status: f"Job {short_id(job.id)}: taken back", panel.gallery: [], panel.infotext: ""}
        yield from follow_job(panel, services, job.id)
