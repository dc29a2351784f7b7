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


def upload_to_editor(page, elem_id: str, path: Path, timeout: int = 60_000) -> None:
    """Upload a picture into an image editor and wait until the editor shows it (its "Upload an image"
    prompt gone): the editor reads the file in the page, so a click before that finds it still empty, and
    a file given before the freshly shown editor listens is lost, so it is given again."""
    shown = "(sel) => { const el = document.querySelector(sel); return el && !el.innerText.includes('Upload an image'); }"
    for attempt in range(max(1, timeout // 15_000)):
        upload_file(page, elem_id, path)
        try:
            page.wait_for_function(shown, arg=f"#{elem_id}", timeout=15_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"the editor #{elem_id} never showed {Path(path).name}")
