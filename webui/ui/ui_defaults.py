"""Per-tab starting values of the generation widgets, kept like A1111's ``ui-config.json``.

Keys are A1111's ``"<tab>/<label>/value"`` (``"txt2img/Sampling steps/value": 30``).
"Save as defaults" in Settings stores the current values of the txt2img,
img2img and inpaint widgets; every page opened afterwards starts from them.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

from webui.fileio import atomic_write_text

# Fields that are not starting values: the model belongs to the top bar, the images to the user.
NOT_SAVED = {"checkpoint", "init_image", "mask", "styles"}


def field_keys(tab_name: str, fields: dict) -> dict:
    """``{A1111 key: component}`` for the tab's saveable widgets (those with a label)."""
    keys = {}
    for name, comp in fields.items():
        label = getattr(comp, "label", None)
        if name in NOT_SAVED or not label:
            continue
        keys.setdefault(f"{tab_name}/{label}/value", comp)
    return keys


def _storable(value) -> bool:
    if isinstance(value, (str, bool, int, float)) or value is None:
        return True
    return isinstance(value, list) and all(isinstance(item, (str, int, float)) for item in value)


class UiDefaults:
    """The ui-config.json file: read on every page load, written by "Save as defaults"."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def load(self) -> dict:
        """The stored values (empty when the file is missing or unreadable)."""
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return stored if isinstance(stored, dict) else {}

    def save(self, values: dict) -> int:
        """Store ``{key: value}`` (values JSON cannot hold are left out); returns how many were stored."""
        kept = {key: value for key, value in values.items() if _storable(value)}
        with self._lock:
            atomic_write_text(self.path, json.dumps(kept, indent=1, ensure_ascii=False))
        return len(kept)

    def reset(self) -> None:
        """Back to the built-in values (the file is removed)."""
        with self._lock:
            self.path.unlink(missing_ok=True)


def wire_ui_defaults(demo, services, settings_tab, generation_tabs) -> UiDefaults:
    """Page load applies the stored values; the Settings buttons save or forget them."""
    import gradio as gr

    from webui.ui import common

    store = UiDefaults(services.settings.outdir / "ui-config.json")
    keyed: dict = {}
    for tab in generation_tabs:
        keyed.update(field_keys(tab.name, tab.fields))
    keys, components = list(keyed), list(keyed.values())

    def on_load():
        stored = store.load()
        return [stored[key] if key in stored else gr.skip() for key in keys]

    demo.load(on_load, outputs=components, show_progress="hidden")

    def save(*values):
        try:
            count = store.save(dict(zip(keys, values)))
        except OSError as exc:
            return f"Not saved: {common.markdown_text(common.readable_error(exc))}"
        return f"Saved {count} default value(s) to ui-config.json; pages opened from now on start with them."

    def reset():
        store.reset()
        return "The built-in defaults apply again to pages opened from now on."

    settings_tab.save_defaults.click(save, inputs=components, outputs=[settings_tab.message], show_progress="hidden")
    settings_tab.reset_defaults.click(reset, outputs=[settings_tab.message], show_progress="hidden")
    return store
