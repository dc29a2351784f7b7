"""A1111's quicksettings: the options named in ``quicksettings_list``, shown under the top bar.

A change is stored at once (the same options store as the Settings tab and the
API). The checkpoint and VAE are the top bar's own dropdowns, so they are not
repeated here. The list is read when the page is built (a restart applies it).
"""
from __future__ import annotations

import gradio as gr

from webui.ui import common, settings

IN_TOP_BAR = {"sd_model_checkpoint", "sd_vae"}


def quick_rows(options) -> list[settings.OptionRow]:
    """The Settings rows of the listed options, in list order (unknown keys are left out)."""
    by_key = {row.key: row for row in settings.rows()}
    keys = options.get("quicksettings_list") or []
    return [by_key[key] for key in dict.fromkeys(keys) if key in by_key and key not in IN_TOP_BAR]


def short_label(row: settings.OptionRow) -> str:
    """The option's name without its explanation in brackets (the top bar has room for one line)."""
    return row.label.split(" (")[0]


def store(options, row: settings.OptionRow, value) -> str:
    """Store one quicksetting; returns the message for the top bar (errors included, nothing raised)."""
    try:
        options.update({row.key: settings.cast_value(row, value)})
    except Exception as exc:  # the store's typed errors name the option
        return f"**Not saved:** {common.markdown_text(common.readable_error(exc))}"
    return f"{common.markdown_text(short_label(row))}: saved."


def build_quicksettings(services, message: gr.Markdown) -> dict:
    """The listed options' widgets and the theme toggle, in the current row (the top bar's), by option key."""
    rows = quick_rows(services.options)
    widgets: dict = {}
    values = services.options.as_dict()
    for row in rows:
        widget = settings.option_widget(row, values.get(row.key), elem_id=f"quick_{row.key}", label=short_label(row))
        widgets[row.key] = widget
        widget.input(lambda value, row=row: store(services.options, row, value), inputs=[widget],
                     outputs=[message], show_progress="hidden")
    build_theme_toggle()
    return widgets


# The theme lives in the browser (localStorage), as gradio's own light/dark switch does.
THEME_TOGGLE_JS = """() => {
  const dark = !document.body.classList.contains('dark');
  document.body.classList.toggle('dark', dark);
  try { localStorage.setItem('webui-theme', dark ? 'dark' : 'light'); } catch (e) {}
}"""
THEME_RESTORE_JS = """() => {
  let stored = null;
  try { stored = localStorage.getItem('webui-theme'); } catch (e) {}
  if (stored === 'dark' || stored === 'light') document.body.classList.toggle('dark', stored === 'dark');
}"""


def build_theme_toggle() -> gr.Button:
    """A button that switches between the light and the dark theme (kept per browser)."""
    button = gr.Button("◐ Theme", elem_id="theme_toggle", size="sm", scale=0, min_width=90)
    button.click(None, js=THEME_TOGGLE_JS)
    return button


def wire_clip_skip(quick: dict, services, tabs) -> None:
    """The Clip skip quicksetting sets every tab's Clip skip slider (which the job uses)."""
    widget = quick.get("CLIP_stop_at_last_layers")
    sliders = [tab.fields["clip_skip"] for tab in tabs if "clip_skip" in tab.fields]
    if widget is None or not sliders:
        return
    widget.input(lambda value: [value] * len(sliders), inputs=[widget], outputs=sliders, show_progress="hidden")
