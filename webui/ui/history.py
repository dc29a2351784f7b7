"""The History tab: every image under the output folder, by day, searchable by prompt, model and seed.

Selecting a tile shows its generation parameters and makes it the image the
Send-to buttons carry (the layout wires them like a result panel's); Delete
asks for a second click before the file goes.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from PIL import Image

from webui.history import OutputHistory
from webui.ui import common

ALL_DAYS = "All days"
PAGE_SIZE = 60
THUMBNAIL_SIDE = 256


@dataclass
class HistoryTab:
    day: gr.Dropdown
    search: gr.Textbox
    model: gr.Textbox
    seed: gr.Number
    find: gr.Button
    gallery: gr.Gallery
    summary: gr.Markdown
    infotext: gr.Textbox
    state: gr.State  # a result-panel state for the selected image (what Send-to reads)
    paths: gr.State  # the paths shown, in gallery order
    send_txt2img: gr.Button
    send_img2img: gr.Button
    send_inpaint: gr.Button
    send_extras: gr.Button
    delete: gr.Button


def _thumbnail(path) -> Image.Image | None:
    try:
        with Image.open(path) as image:
            image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            return image.convert("RGB")
    except Exception:
        return None


def parse_seed(value) -> int | None:
    """The seed filter: a whole number, or None when the box is empty or holds -1."""
    if value in (None, ""):
        return None
    seed = int(float(value))
    return None if seed == -1 else seed


def find_images(history: OutputHistory, day, text, model, seed):
    """Gallery tiles (thumbnail, caption), the shown paths and a one-line summary."""
    try:
        seed = parse_seed(seed)
    except (TypeError, ValueError):
        return [], [], "The seed must be a whole number."
    found = history.search(text or "", seed=seed, model=model or "", day="" if day in (None, ALL_DAYS) else day)
    shown = found[:PAGE_SIZE]
    tiles, paths = [], []
    for entry in shown:
        thumb = _thumbnail(entry.path)
        if thumb is not None:  # a file that cannot be read (half-written, damaged) gets no tile
            tiles.append((thumb, entry.caption()))
            paths.append(str(entry.path))
    more = f" (showing the newest {PAGE_SIZE})" if len(found) > PAGE_SIZE else ""
    return tiles, paths, f"{len(found)} image(s) found{more}."


def selected_state(history: OutputHistory, path: str | None) -> tuple[dict, str]:
    """A result-panel state holding the full image at ``path``, and its infotext."""
    entry = next((e for e in history.entries() if str(e.path) == path), None) if path else None
    if entry is None:
        return {"images": [], "infotexts": [], "seeds": [], "selected": 0, "job_id": None}, ""
    with Image.open(entry.path) as image:
        full = image.convert("RGB")
    seeds = [entry.seed] if entry.seed is not None else []
    return {"images": [full], "infotexts": [entry.infotext], "seeds": seeds, "selected": 0, "job_id": None,
            "path": str(entry.path)}, entry.infotext


def build_history_tab(services) -> HistoryTab:
    """Build the tab (inside a gr.Tab); the send buttons are wired by the layout."""
    history = OutputHistory(services.settings.outdir)
    with gr.Row():
        day = gr.Dropdown(label="Day", elem_id="history_day", choices=[ALL_DAYS], value=ALL_DAYS, scale=1)
        search = gr.Textbox(label="Prompt contains", elem_id="history_search", scale=3,
                            placeholder="words of the prompt or negative prompt")
        model = gr.Textbox(label="Model", elem_id="history_model", scale=2, placeholder="name or hash")
        seed = gr.Number(label="Seed", elem_id="history_seed", value=None, precision=0, scale=1)
        find = gr.Button("Search", elem_id="history_find", variant="primary", scale=0, min_width=100)
    summary = gr.Markdown("", elem_id="history_summary")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Saved images", elem_id="history_gallery", columns=6, height=520,
                                 interactive=False, allow_preview=False, type="pil", format="png")
        with gr.Column(scale=2):
            infotext = gr.Textbox(label="Generation parameters", elem_id="history_infotext", lines=6,
                                  interactive=False)
            with gr.Row():
                send_txt2img = gr.Button("Send to txt2img", elem_id="history_send_to_txt2img", size="sm")
                send_img2img = gr.Button("Send to img2img", elem_id="history_send_to_img2img", size="sm")
                send_inpaint = gr.Button("Send to inpaint", elem_id="history_send_to_inpaint", size="sm")
                send_extras = gr.Button("Send to extras", elem_id="history_send_to_extras", size="sm")
            delete = gr.Button("Delete", elem_id="history_delete", variant="stop", size="sm")
            with gr.Row(visible=False, elem_id="history_confirm_row") as confirm_row:
                confirm_text = gr.Markdown("", elem_id="history_confirm_text")
                confirm = gr.Button("Yes, delete it", elem_id="history_confirm_delete", variant="stop", size="sm")
                cancel = gr.Button("Keep it", elem_id="history_cancel_delete", size="sm")
    state = gr.State({"images": [], "infotexts": [], "seeds": [], "selected": 0, "job_id": None})
    paths = gr.State([])

    def run_search(day_value, text, model_value, seed_value):
        tiles, shown, note = find_images(history, day_value, text, model_value, seed_value)
        days = [ALL_DAYS, *history.days()]
        return (gr.Dropdown(choices=days, value=day_value if day_value in days else ALL_DAYS), tiles, shown, note,
                *selected_state(history, None), gr.Row(visible=False))

    search_outputs = [day, gallery, paths, summary, state, infotext, confirm_row]
    for trigger in (find.click, search.submit, model.submit, seed.submit, day.input):
        trigger(run_search, inputs=[day, search, model, seed], outputs=search_outputs, show_progress="hidden")

    def on_select(shown, evt: gr.SelectData):
        index = evt.index if isinstance(evt.index, int) else 0
        path = shown[index] if 0 <= index < len(shown) else None
        try:
            return *selected_state(history, path), gr.Row(visible=False)
        except OSError as exc:
            common.warn(common.readable_error(exc))
            return *selected_state(history, None), gr.Row(visible=False)

    gallery.select(on_select, inputs=[paths], outputs=[state, infotext, confirm_row], show_progress="hidden")

    def ask(current):
        path = (current or {}).get("path")
        if not path:
            common.warn("Select an image first.")
            return gr.Row(visible=False), ""
        return gr.Row(visible=True), f"Delete **{common.markdown_text(path.rsplit('/', 1)[-1])}** for good?"

    delete.click(ask, inputs=[state], outputs=[confirm_row, confirm_text], show_progress="hidden")
    cancel.click(lambda: gr.Row(visible=False), outputs=[confirm_row], show_progress="hidden")

    def really_delete(current, day_value, text, model_value, seed_value):
        path = (current or {}).get("path")
        try:
            gone = history.delete(path) if path else None
        except (OSError, ValueError) as exc:
            common.warn(common.readable_error(exc))
            gone = None
        *updates, _ = run_search(day_value, text, model_value, seed_value)
        note = updates[3] if gone is None else f"Deleted {common.markdown_text(gone.path.name)}. {updates[3]}"
        updates[3] = note
        return (*updates, gr.Row(visible=False))

    confirm.click(really_delete, inputs=[state, day, search, model, seed], outputs=search_outputs,
                  show_progress="hidden")
    return HistoryTab(day, search, model, seed, find, gallery, summary, infotext, state, paths,
                      send_txt2img, send_img2img, send_inpaint, send_extras, delete)
