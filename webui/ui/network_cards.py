"""Extra networks as A1111's cards: checkpoints, LoRAs, embeddings and wildcards, with thumbnails.

A card's thumbnail is ``NAME.preview.png`` beside the file (A1111's name), else
``NAME.png``; it travels inside the page as a small data URI, so nothing of the
models folder is ever served by path. Clicking a LoRA, embedding or wildcard
card inserts its text at the prompt box's cursor (with the weight chosen above
the cards); a checkpoint card loads that checkpoint; "meta" shows a LoRA's
training tags (``ss_*``). Search and sort run in the browser.
"""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

THUMBNAIL_SIDE = 128
KINDS = ("checkpoint", "lora", "embedding", "wildcard")


@dataclass(frozen=True)
class Card:
    """One card: what it shows and what a click inserts (``text`` holds ``{w}`` for the weight)."""

    kind: str
    name: str
    text: str
    modified: float = 0.0
    preview: str = ""  # data URI of the thumbnail, "" for none
    description: str = ""


def preview_path(model_path: Path) -> Path | None:
    """``NAME.preview.png`` (A1111) or ``NAME.png`` beside a model file, when present."""
    base = model_path.with_suffix("") if model_path.is_file() else model_path
    for candidate in (base.parent / f"{base.name}.preview.png", base.parent / f"{base.name}.png"):
        if candidate.is_file():
            return candidate
    return None


class ThumbnailCache:
    """Small data-URI thumbnails, made once per file version."""

    def __init__(self):
        self._cache: dict[Path, tuple[float, str]] = {}

    def data_uri(self, path: Path | None) -> str:
        if path is None:
            return ""
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return ""
        cached = self._cache.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, "JPEG", quality=85)
        except Exception:  # a broken preview file shows the card without a picture
            return ""
        uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
        self._cache[path] = (mtime, uri)
        return uri


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _listed(source) -> list:
    """A catalog listing, or nothing when it fails (one broken folder must not hide the other cards)."""
    try:
        return list(source())
    except Exception:
        return []


def collect_cards(services, thumbnails: ThumbnailCache) -> dict[str, list[Card]]:
    """Cards by kind, from the catalog and the wildcard index."""
    from webui.ui import common

    catalog = services.catalog

    def card(kind, info, name, text, description=""):
        return Card(kind, name, text, _mtime(info.path), thumbnails.data_uri(preview_path(info.path)), description)

    return {
        "checkpoint": [card("checkpoint", i, i.title, i.title) for i in _listed(catalog.checkpoints)],
        "lora": [card("lora", i, i.name, f"<lora:{i.name}:{{w}}>", ", ".join(i.trigger_words[:5]))
                 for i in _listed(catalog.loras)],
        "embedding": [card("embedding", i, i.stem, i.stem) for i in _listed(catalog.embeddings)],
        "wildcard": [Card("wildcard", name, f"__{name}__") for name in common.wildcard_names(services)],
    }


def cards_html(tab: str, cards: dict[str, list[Card]]) -> str:
    """The whole panel: search, sort, weight, then one section of cards per kind."""
    sections = []
    titles = {"checkpoint": "Checkpoints", "lora": "LoRA", "embedding": "Textual inversion", "wildcard": "Wildcards"}
    for kind in KINDS:
        items = []
        for card in cards.get(kind, []):
            picture = f"<img src='{card.preview}' alt='' loading='lazy'>" if card.preview else \
                "<div class='card-no-preview'>no preview</div>"
            meta = "<span class='card-meta' role='button' title='Show training metadata (ss_* tags)'>meta</span>" \
                if kind == "lora" else ""
            items.append(
                f"<div class='network-card' data-kind='{kind}' data-name='{html.escape(card.name, quote=True)}' "
                f"data-text='{html.escape(card.text, quote=True)}' data-modified='{card.modified}' "
                f"title='{html.escape(card.description or card.text, quote=True)}'>{picture}"
                f"<div class='card-name'>{html.escape(card.name)}</div>{meta}</div>")
        body = "".join(items) or "<p class='card-empty'>None found.</p>"
        sections.append(f"<details open class='card-section' data-kind='{kind}'><summary>{titles[kind]} "
                        f"({len(cards.get(kind, []))})</summary><div class='card-grid'>{body}</div></details>")
    controls = (
        f"<div class='card-controls'><input type='search' class='card-search' id='{tab}_network_search' "
        "placeholder='Search by name' aria-label='Search networks'>"
        f"<label>Sort <select class='card-sort' id='{tab}_network_sort'><option value='name'>Name</option>"
        "<option value='modified'>Newest</option></select></label>"
        f"<label title='Weight written into inserted LoRA tags'>Weight <input type='number' class='card-weight' "
        f"id='{tab}_network_weight' value='1' step='0.05' min='-5' max='5'></label></div>"
    )
    return f"<div class='network-cards' data-tab='{tab}'>{controls}{''.join(sections)}</div>"


def lora_metadata_text(services, name: str) -> str:
    """The ``ss_*`` training tags of one LoRA, as JSON text (long values cut)."""
    info = services.catalog.find_lora(name)
    tags = {}
    for key, value in sorted((info.metadata or {}).items()):
        if not key.startswith("ss_"):
            continue
        text = str(value)
        tags[key] = text if len(text) <= 400 else text[:399] + "…"
    return json.dumps(tags, indent=1, ensure_ascii=False) if tags else f"{name} has no ss_* training metadata."


# Runs once per panel. Delegated listeners survive the panel being drawn again after a refresh.
CARDS_JS = """
const panel = () => element.querySelector('.network-cards');
const promptBox = () => document.querySelector('#' + panel().dataset.tab + '_prompt textarea');
function insertAtCursor(box, text) {
  const start = box.selectionStart ?? box.value.length, end = box.selectionEnd ?? start;
  const before = box.value.slice(0, start), after = box.value.slice(end);
  if (before.includes(text) || after.includes(text)) return;
  const trimmed = before.replace(/\\s+$/, '');
  const lead = trimmed === '' ? '' : (trimmed.endsWith(',') ? ' ' : ', ');
  const follow = after === '' || /^[\\s,]/.test(after) ? '' : ', ';
  box.value = trimmed + lead + text + follow + after;
  const cursor = (trimmed + lead + text).length;
  box.setSelectionRange(cursor, cursor);
  box.dispatchEvent(new Event('input', {bubbles: true}));
  box.focus();
}
function filterAndSort() {
  const query = (element.querySelector('.card-search')?.value || '').toLowerCase();
  const order = element.querySelector('.card-sort')?.value || 'name';
  element.querySelectorAll('.card-grid').forEach(grid => {
    const cards = [...grid.querySelectorAll('.network-card')];
    cards.sort((a, b) => order === 'modified'
      ? Number(b.dataset.modified) - Number(a.dataset.modified)
      : a.dataset.name.localeCompare(b.dataset.name));
    cards.forEach(card => {
      card.style.display = card.dataset.name.toLowerCase().includes(query) ? '' : 'none';
      grid.appendChild(card);
    });
  });
}
element.addEventListener('input', e => { if (e.target.matches('.card-search')) filterAndSort(); });
element.addEventListener('change', e => { if (e.target.matches('.card-sort')) filterAndSort(); });
element.addEventListener('click', e => {
  const card = e.target.closest('.network-card');
  if (!card) return;
  if (e.target.closest('.card-meta')) { trigger('click', {action: 'meta', name: card.dataset.name}); return; }
  if (card.dataset.kind === 'checkpoint') { trigger('click', {action: 'checkpoint', name: card.dataset.name}); return; }
  const weight = element.querySelector('.card-weight')?.value || '1';
  const text = card.dataset.text.replace('{w}', String(Number(weight)));
  const box = promptBox();
  if (box) insertAtCursor(box, text);
});
"""

CARDS_CSS = """
.network-cards .card-controls { display: flex; gap: 12px; align-items: center; margin-bottom: 6px; }
.network-cards .card-controls input[type=number] { width: 5em; }
.network-cards .card-grid { display: flex; flex-wrap: wrap; gap: 8px; }
.network-cards .network-card { width: 128px; cursor: pointer; border: 1px solid #8886; border-radius: 6px;
  overflow: hidden; position: relative; }
.network-cards .network-card img, .network-cards .card-no-preview { width: 128px; height: 128px; object-fit: cover;
  display: flex; align-items: center; justify-content: center; font-size: 12px; opacity: .8; }
.network-cards .card-name { padding: 2px 4px; font-size: 13px; word-break: break-all; }
.network-cards .card-meta { position: absolute; top: 2px; right: 2px; font-size: 11px; padding: 0 4px;
  background: #000a; color: #fff; border-radius: 4px; }
"""
