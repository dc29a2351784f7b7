"""Prompt autocomplete for LoRA, embedding and wildcard names (the names known when the page was built).

Typing ``<lora:ou`` offers ``<lora:outline:1>``, ``__an`` offers ``__animal__``,
and a word that starts an embedding's name offers the name; Tab or Enter (or a
click) takes the first or the highlighted entry, Esc closes the list.
"""
from __future__ import annotations

import json


def completion_names(services) -> dict[str, list[str]]:
    """``{"lora": [...], "embedding": [...], "wildcard": [...]}`` from the catalog and wildcard index."""
    from webui.ui import common

    def listed(source):
        try:
            return sorted({getattr(item, "stem", None) or item.name for item in source()})
        except Exception:
            return []

    return {"lora": listed(services.catalog.loras), "embedding": listed(services.catalog.embeddings),
            "wildcard": sorted(common.wildcard_names(services))}


def completions(names: dict[str, list[str]], before_cursor: str, limit: int = 8) -> tuple[int, list[str]]:
    """What the list offers for the text before the cursor: (characters to replace, entries).

    The browser script does the same; this is its reference, kept beside it for tests.
    """
    lora = before_cursor.rfind("<lora:")
    if lora >= 0 and ">" not in before_cursor[lora:]:
        typed = before_cursor[lora + 6:].lower()
        return len(before_cursor) - lora, [f"<lora:{n}:1>" for n in names["lora"] if n.lower().startswith(typed)][:limit]
    word = before_cursor.split()[-1] if before_cursor.split() else ""
    word = word.split(",")[-1].lstrip("([")
    if word.startswith("__"):
        typed = word[2:].lower()
        return len(word), [f"__{n}__" for n in names["wildcard"] if n.lower().startswith(typed)][:limit]
    if len(word) >= 2:
        return len(word), [n for n in names["embedding"] if n.lower().startswith(word.lower()) and n != word][:limit]
    return 0, []


def page_script(names: dict[str, list[str]]) -> str:
    """The browser side (run with the page's load scripts)."""
    return """() => {
  const names = %s;
  const boxes = '#txt2img_prompt textarea, #txt2img_neg_prompt textarea, #img2img_prompt textarea, '
    + '#img2img_neg_prompt textarea, #inpaint_prompt textarea, #inpaint_neg_prompt textarea';
  const list = document.createElement('ul');
  list.id = 'prompt_autocomplete';
  list.style.cssText = 'position:absolute;z-index:1000;list-style:none;margin:0;padding:2px;display:none;'
    + 'background:var(--background-fill-primary,#fff);border:1px solid #8888;border-radius:4px;font-size:14px';
  document.body.appendChild(list);
  let box = null, replace = 0, entries = [], chosen = 0;
  function offer(before) {
    const lora = before.lastIndexOf('<lora:');
    if (lora >= 0 && !before.slice(lora).includes('>')) {
      const typed = before.slice(lora + 6).toLowerCase();
      return [before.length - lora, names.lora.filter(n => n.toLowerCase().startsWith(typed)).map(n => `<lora:${n}:1>`)];
    }
    let word = (before.split(/\\s/).pop() || '').split(',').pop().replace(/^[(\\[]+/, '');
    if (word.startsWith('__')) {
      const typed = word.slice(2).toLowerCase();
      return [word.length, names.wildcard.filter(n => n.toLowerCase().startsWith(typed)).map(n => `__${n}__`)];
    }
    if (word.length >= 2) {
      return [word.length, names.embedding.filter(n => n.toLowerCase().startsWith(word.toLowerCase()) && n !== word)];
    }
    return [0, []];
  }
  function close() { list.style.display = 'none'; entries = []; }
  function take(entry) {
    const at = box.selectionStart, text = box.value;
    box.value = text.slice(0, at - replace) + entry + text.slice(at);
    const cursor = at - replace + entry.length;
    box.setSelectionRange(cursor, cursor);
    box.dispatchEvent(new Event('input', {bubbles: true}));
    close();
  }
  function show() {
    list.innerHTML = '';
    entries.forEach((entry, i) => {
      const item = document.createElement('li');
      item.textContent = entry;
      item.style.cssText = 'padding:1px 6px;cursor:pointer;' + (i === chosen ? 'background:#8884' : '');
      item.addEventListener('mousedown', e => { e.preventDefault(); take(entry); });
      list.appendChild(item);
    });
    const rect = box.getBoundingClientRect();
    list.style.left = (window.scrollX + rect.left) + 'px';
    list.style.top = (window.scrollY + rect.bottom) + 'px';
    list.style.display = 'block';
  }
  document.addEventListener('input', e => {
    if (!e.target.matches || !e.target.matches(boxes) || !e.isTrusted) return;
    box = e.target;
    [replace, entries] = offer(box.value.slice(0, box.selectionStart));
    entries = entries.slice(0, 8); chosen = 0;
    entries.length ? show() : close();
  }, true);
  document.addEventListener('keydown', e => {
    if (!entries.length || e.target !== box) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      chosen = (chosen + (e.key === 'ArrowDown' ? 1 : entries.length - 1)) %% entries.length; show();
    } else if (e.key === 'Tab' || e.key === 'Enter') { take(entries[chosen]); }
    else if (e.key === 'Escape') { close(); }
    else return;
    e.preventDefault(); e.stopPropagation();
  }, true);
  document.addEventListener('focusout', e => { if (e.target === box) setTimeout(close, 150); }, true);
}""" % json.dumps(names)
