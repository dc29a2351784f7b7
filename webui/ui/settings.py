"""The Settings tab: option widgets listed from a table, applied through the same options store as the API.

Each row of ``SECTIONS`` names an option (A1111's key), its label and its widget;
"Apply settings" validates and stores the changed values (the store writes
``config.json`` under the output folder, so they persist across restarts).
More sections are added by adding rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from webui.ui import common

FORMAT_CHOICES = ["png", "jpg", "webp"]
PATTERN_HELP = "Tags: [seed], [prompt_spaces], [prompt_words], [model_name], [date], [datetime<%Y%m%d>] ..."


@dataclass(frozen=True)
class OptionRow:
    """One option on the page: key, label, widget kind ("check", "text", "choice", "number") and its limits."""

    key: str
    label: str
    kind: str = "text"
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    info: str | None = None


SECTIONS: dict[str, list[OptionRow]] = {
    "Saving images": [
        OptionRow("samples_save", "Always save all generated images", "check"),
        OptionRow("samples_format", "File format for images", "choice", tuple(FORMAT_CHOICES)),
        OptionRow("samples_filename_pattern", "Images filename pattern", info=PATTERN_HELP + " (empty: [seed])"),
        OptionRow("save_images_add_number", "Add number to filename when saving", "check"),
        OptionRow("grid_save", "Always save all generated image grids", "check"),
        OptionRow("grid_format", "File format for grids", "choice", tuple(FORMAT_CHOICES)),
        OptionRow("grid_extended_filename", "Add extended info (seed, prompt) to filename when saving grid", "check"),
        OptionRow("grid_only_if_multiple", "Do not save grids consisting of one picture", "check"),
        OptionRow("grid_prevent_empty_spots", "Prevent empty spots in grid (when set to autodetect)", "check"),
        OptionRow("n_rows", "Grid row count; use -1 for autodetect and 0 for it to be same as batch size", "number",
                  minimum=-1, maximum=16),
        OptionRow("grid_background_color", "Background color for image grids"),
        OptionRow("save_txt", "Create a text file with infotext next to every image", "check"),
        OptionRow("jpeg_quality", "Quality for saved jpeg and webp images", "number", minimum=1, maximum=100),
        OptionRow("webp_lossless", "Use lossless compression for webp images", "check"),
    ],
    "Saving to a directory": [
        OptionRow("save_to_dirs", "Save images to a subdirectory", "check"),
        OptionRow("grid_save_to_dirs", "Save grids to a subdirectory", "check"),
        OptionRow("directories_filename_pattern", "Directory name pattern", info=PATTERN_HELP + " (empty: [date])"),
        OptionRow("directories_max_prompt_words", "Max prompt words for [prompt_words] pattern", "number",
                  minimum=1, maximum=20),
    ],
    "Paths for saving (folders inside the output folder)": [
        OptionRow("outdir_samples", "Output directory for images; if empty, defaults to the three below"),
        OptionRow("outdir_txt2img_samples", "Output directory for txt2img images"),
        OptionRow("outdir_img2img_samples", "Output directory for img2img images"),
        OptionRow("outdir_extras_samples", "Output directory for images from extras tab"),
        OptionRow("outdir_grids", "Output directory for grids; if empty, defaults to the two below"),
        OptionRow("outdir_txt2img_grids", "Output directory for txt2img grids"),
        OptionRow("outdir_img2img_grids", "Output directory for img2img grids"),
    ],
    "Notifications": [
        OptionRow("notification_audio", "Play a sound when a job ends (and show a browser notification, if allowed)",
                  "check"),
    ],
}


@dataclass
class SettingsTab:
    widgets: dict  # option key -> component
    apply: gr.Button
    message: gr.Markdown

    def refresh(self, services) -> list:
        """The widgets' values from the options store (for page load)."""
        return current_values(services.options, list(self.widgets))


def rows() -> list[OptionRow]:
    """Every option row of the page, in order."""
    return [row for section in SECTIONS.values() for row in section]


def current_values(options, keys: list[str]) -> list:
    """The stored value of each key, in order."""
    values = options.as_dict()
    return [values.get(key) for key in keys]


def _cast(row: OptionRow, value):
    if row.kind == "check":
        return bool(value)
    if row.kind == "number":
        return int(value) if value is not None and float(value).is_integer() else value
    return "" if value is None else str(value)


def apply_settings(options, keys: list[str], values: list) -> str:
    """Store the changed values; returns the message shown under the button (errors included, nothing raised)."""
    by_key = {row.key: row for row in rows()}
    stored = options.as_dict()
    try:
        changes = {key: _cast(by_key[key], value) for key, value in zip(keys, values)}
    except (TypeError, ValueError) as exc:
        return f"Not saved: {exc}"
    changes = {key: value for key, value in changes.items() if stored.get(key) != value}
    if not changes:
        return "Nothing changed."
    try:
        options.update(changes)
    except Exception as exc:  # the store's typed errors name the option
        return f"Not saved: {common.readable_error(exc)}"
    return f"{len(changes)} setting(s) changed: {', '.join(sorted(changes))}."


def _widget(row: OptionRow, value):
    common_args = {"label": row.label, "value": value, "elem_id": f"setting_{row.key}"}
    if row.kind == "check":
        return gr.Checkbox(**common_args)
    if row.kind == "choice":
        return gr.Dropdown(choices=list(row.choices), **common_args)
    if row.kind == "number":
        return gr.Number(minimum=row.minimum, maximum=row.maximum, precision=0, **common_args)
    return gr.Textbox(info=row.info, **common_args)


def build_settings_tab(services) -> SettingsTab:
    """Build the tab (inside a gr.Tab); the layout refreshes its values on page load."""
    values = services.options.as_dict()
    widgets = {}
    with gr.Row():
        apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
    message = gr.Markdown(elem_id="settings_result")
    for title, section in SECTIONS.items():
        with gr.Accordion(title, open=True):
            for row in section:
                widgets[row.key] = _widget(row, values.get(row.key))
    keys = list(widgets)

    def on_apply(*new_values):
        text = apply_settings(services.options, keys, list(new_values))
        return [text, *current_values(services.options, keys)]

    apply.click(on_apply, inputs=list(widgets.values()), outputs=[message, *widgets.values()],
                show_progress="hidden")
    return SettingsTab(widgets, apply, message)
