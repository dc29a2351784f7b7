"""Small page helpers for the flows: find gradio widgets by elem_id, type, drop files, read results."""
from __future__ import annotations

import base64
import io
import re
from pathlib import Path

from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

DONE_TIMEOUT_MS = 60_000


def open_tab(page, tab_id: str) -> None:
    page.click(f"button[role=tab]#tab_{tab_id}-button")
    page.wait_for_selector(f"#tab_{tab_id}", state="visible")


def fill_text(page, elem_id: str, text: str) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input[type=text]").first
    box.fill(text)


def set_number(page, elem_id: str, value) -> None:
    """Type into a gradio Number or Slider's number box and commit it."""
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def choose(page, elem_id: str, option: str) -> None:
    """Pick an option of a gradio Dropdown by its visible text."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    item = page.locator(f"#{elem_id} li[role=option]", has_text=option).first
    item.wait_for()
    item.click(force=True)  # the list animates open; force skips waiting for it to settle
    box.blur()


def dropdown_options(page, elem_id: str) -> list[str]:
    page.locator(f"#{elem_id} input").first.click()
    page.wait_for_selector(f"#{elem_id} li[role=option]")
    texts = page.eval_on_selector_all(f"#{elem_id} li[role=option]", "els => els.map(e => e.getAttribute('aria-label'))")
    page.locator("#demo_note").click()  # close the list without picking anything
    return texts


def text_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def textbox_value(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first.input_value()


def wait_status(page, tab: str, *words: str, timeout: int = DONE_TIMEOUT_MS) -> str:
    """Wait until the tab's status line contains one of ``words``; returns the line."""
    page.wait_for_function(
        """([sel, words]) => { const el = document.querySelector(sel);
            return el && words.some(w => el.innerText.includes(w)); }""",
        arg=[f"#{tab}_status", list(words)], timeout=timeout,
    )
    return status_text(page, tab)


def status_text(page, tab: str) -> str:
    """The tab's status line without gradio's event timer ("0.3s") in front."""
    return re.sub(r"^\s*[\d.]+s\s*", "", page.locator(f"#{tab}_status").inner_text())


def generate(page, tab: str) -> str:
    """Press Generate and wait for the final status of the new job (final lines end with "(job ID)")."""
    before = status_text(page, tab)
    old = re.search(r"\(job (\w+)\)", before)
    page.click(f"#{tab}_generate")
    # A request refused before it became a job says "Error:" without a job id.
    page.wait_for_function(
        """([sel, old, before]) => { const el = document.querySelector(sel);
            if (!el) return false;
            const text = el.innerText.replace(/^\\s*[\\d.]+s\\s*/, "");
            const m = text.match(/\\(job (\\w+)\\)/);
            return m ? m[1] !== old : (text.startsWith("Error:") && text !== before); }""",
        arg=[f"#{tab}_status", old.group(1) if old else None, before], timeout=DONE_TIMEOUT_MS,
    )
    return status_text(page, tab)


def gallery_images(page, tab: str) -> list[Image.Image]:
    """Download the images the gallery shows (deduplicated by URL)."""
    page.wait_for_selector(f"#{tab}_gallery img")
    sources = page.eval_on_selector_all(f"#{tab}_gallery img", "els => [...new Set(els.map(e => e.src))]")
    images = []
    for src in sources:
        response = page.request.get(src)
        assert response.ok, f"{src}: {response.status}"
        images.append(Image.open(io.BytesIO(response.body())).convert("RGB"))
    return images


def image_natural_size(page, selector: str) -> tuple[int, int]:
    page.wait_for_selector(selector)
    return tuple(page.eval_on_selector(selector, "e => [e.naturalWidth, e.naturalHeight]"))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def drop_file(page, selector: str, path: Path, mime: str = "image/png") -> None:
    """A real drag-and-drop: dragenter, dragover and drop events carrying a DataTransfer with the file."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    page.eval_on_selector(
        selector,
        """(target, [data, name, mime]) => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: mime}));
            for (const type of ["dragenter", "dragover", "drop"]) {
                target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: transfer}));
            }
        }""",
        [data, Path(path).name, mime],
    )


def upload_file(page, elem_id: str, path: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").first.set_input_files(str(path))


def page_errors(page) -> list[str]:
    """The script errors and console errors the page has shown so far (kept by the ``new_page`` fixture)."""
    return list(getattr(page, "webui_errors", []))


def upload_to_editor(page, tab: str, elem_id: str, path: Path, attempts: int = 4) -> None:
    """Upload a picture into the image editor on ``tab`` and wait until the editor shows it.

    The editor takes a file only once its drawing surface (a WebGL canvas) is made, and it reads the file in
    the page, so the helper waits for the canvas, uploads, and waits for the "Upload an image" prompt to go.
    A file that an editor still settling drops is given again; an editor that never takes one (CI once saw
    one stay empty through four uploads) is given a freshly loaded page, so call this before setting the
    tab's other fields. A failure names the page's errors.
    """
    shown = "(sel) => { const el = document.querySelector(sel); return el && !el.innerText.includes('Upload an image'); }"
    for attempt in range(attempts):
        if attempt == attempts // 2:
            page.reload()
            page.wait_for_selector("#txt2img_generate")
            open_tab(page, tab)
        page.wait_for_selector(f"#{elem_id} canvas", timeout=30_000)
        upload_file(page, elem_id, path)
        try:
            page.wait_for_function(shown, arg=f"#{elem_id}", timeout=15_000)
            return
        except PlaywrightTimeout:
            continue
    editor_text = page.eval_on_selector(f"#{elem_id}", "e => e.innerText")
    errors = "\n".join(page_errors(page)[-20:]) or "none"
    raise AssertionError(f"the editor #{elem_id} never showed {Path(path).name} after {attempts} uploads; "
                         f"it reads {editor_text!r}; the page's errors:\n{errors}")
