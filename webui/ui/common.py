"""Helpers shared by the tabs: who the user is, readable errors, choice lists, job fields.

Nothing here builds widgets; the functions read the Services bundle defensively
so a missing optional service (no upscalers, no styles) hides an option instead
of breaking the page.
"""
from __future__ import annotations

import html
import logging
import re

from webui import vocabulary
from webui.schemas import WebUIError
from webui.security.identity import Identity, caller_from_headers

log = logging.getLogger(__name__)

# The tabs' radio choices, A1111's (the request fields carry their index).
RESIZE_MODES = list(vocabulary.RESIZE_MODES)
MASKED_CONTENT = list(vocabulary.MASKED_CONTENT)
INPAINT_AREAS = list(vocabulary.INPAINT_AREAS)
MASK_MODES = list(vocabulary.MASK_MODES)

DEMO_NOTE = (
    "The shipped demo model shows that the pipeline works end to end (prompt, sampler, VAE, saving); "
    "it is not an art model. Put your own checkpoints in models/Stable-diffusion and press ↻ (refresh)."
)


def caller(request) -> Identity:
    """Who uses this page: the identity webui.security's middleware put in the request's headers.

    Without the middleware (the UI built alone in a test) the gradio session stands in.
    """
    session = getattr(request, "session_hash", None) if request is not None else None
    headers = getattr(request, "headers", None) if request is not None else None
    return caller_from_headers(headers, fallback=f"ui:{session}" if session else "ui:anonymous")


def owner_of(request) -> str:
    """The owner given to the queue for this user's jobs, so buttons act on their own jobs only."""
    return caller(request).owner


MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>:@])")


def markdown_text(text) -> str:
    """``text`` made inert for a gr.Markdown: no HTML, no links, images or emphasis, shown as typed."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(str(text), quote=False))


def warn(text) -> None:
    """A gr.Warning toast showing ``text`` as text (gradio renders toast messages as HTML)."""
    import gradio as gr

    gr.Warning(html.escape(str(text)))


def readable_error(exc: BaseException) -> str:
    """A one-line message for the user; our own typed errors carry their message as is."""
    if isinstance(exc, WebUIError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, (ValueError, TypeError, KeyError, FileNotFoundError, PermissionError)):
        text = str(exc).strip("'\"") or type(exc).__name__
        return f"{type(exc).__name__}: {text}"
    log.exception("unexpected error in the UI", exc_info=exc)
    return f"Unexpected error ({type(exc).__name__}): {exc}. See the server log for details."


def _names(obj, *attrs) -> list[str]:
    """First list of names that one of ``attrs`` (a method or attribute) gives on ``obj``."""
    if obj is None:
        return []
    for attr in attrs:
        value = getattr(obj, attr, None)
        if value is None:
            continue
        try:
            value = value() if callable(value) else value
        except Exception as exc:  # a broken optional service must not break the page
            log.warning("could not list %s.%s: %s", type(obj).__name__, attr, exc)
            return []
        if isinstance(value, dict):
            value = list(value)
        names = []
        for item in value:
            names.append(item if isinstance(item, str) else getattr(item, "name", str(item)))
        return names
    return []


def sampler_names(services) -> list[str]:
    return _names(services.engine, "sampler_names") or vocabulary.sampler_names()


def scheduler_names(services) -> list[str]:
    return _names(services.engine, "scheduler_names") or vocabulary.schedule_labels()


def upscaler_names(services) -> list[str]:
    """Extras upscalers: None, Lanczos, Nearest, then every recognised model."""
    names = _names(services.upscalers, "names") or list(vocabulary.BUILTIN_UPSCALERS)
    return list(dict.fromkeys(["None", *names]))


def hr_upscaler_names(services) -> list[str]:
    """Hires fix upscalers: latent modes first, then the extras upscalers (without None)."""
    models = [n for n in upscaler_names(services) if n != "None"]
    return list(dict.fromkeys([*vocabulary.LATENT_UPSCALE_MODES, *models]))


def face_restorer_names(services) -> list[str]:
    return _names(services.faces, "names") or ["CodeFormer", "GFPGAN"]


def face_weights_note(services) -> str | None:
    """Where to put face restoration weights when none are installed (None when some are)."""
    if _names(services.faces, "names"):
        return None
    models = getattr(services.settings, "models_dir", "models")
    return (f"No face restoration weights installed: put codeformer-v0.1.0.pth in {models}/Codeformer "
            f"or GFPGANv1.4.pth in {models}/GFPGAN, then restart. Without them the image is kept unrestored.")


def style_names(services) -> list[str]:
    return _names(services.styles, "names", "styles")


def wildcard_names(services) -> list[str]:
    return _names(services.wildcards, "names", "list")


def checkpoint_titles(services) -> list[str]:
    try:
        return [info.title for info in services.catalog.checkpoints()]
    except Exception as exc:
        log.warning("could not list checkpoints: %s", exc)
        return []


def current_checkpoint_title(services) -> str | None:
    """The loaded checkpoint's title, else the saved option, else the catalog's default."""
    titles = checkpoint_titles(services)
    try:
        current = services.models.current_checkpoint
    except Exception:
        current = None
    if current is not None and getattr(current, "title", None) in titles:
        return current.title
    saved = services.options.get("sd_model_checkpoint") if services.options is not None else None
    if saved in titles:
        return saved
    default = getattr(services.catalog, "default_checkpoint", lambda: None)()
    if default is not None and default.title in titles:
        return default.title
    return titles[0] if titles else None


# ---------------------------------------------------------------- job fields
def job_status(job) -> str:
    status = getattr(job, "status", "")
    return getattr(status, "value", str(status))


def job_finished(job) -> bool:
    status = getattr(job, "status", None)
    finished = getattr(status, "finished", None)
    if finished is not None:
        return bool(finished)
    return job_status(job) not in ("queued", "running")


def job_prompt(job, length: int = 40) -> str:
    request = getattr(job, "request", None)
    describe = getattr(request, "describe", None)  # a model job: "load checkpoint ..."
    if callable(describe):
        return describe()
    prompt = getattr(request, "prompt", None)
    if prompt is None:
        count = len(getattr(request, "images", []) or [])
        return f"extras: {count} image(s)" if request is not None else ""
    prompt = re.sub(r"\s+", " ", prompt).strip()
    return prompt if len(prompt) <= length else prompt[: length - 1] + "…"


def progress_text(job) -> str:
    """``queued (position 2)`` / ``running: image 1/2, step 3/20, 15%, ETA 4s`` / final status."""
    status = job_status(job)
    if status == "queued":
        position = getattr(job, "position", None)
        return f"queued (position {position})" if position is not None else "queued"
    progress = getattr(job, "progress", None)
    if status == "running":
        if progress is None or not getattr(progress, "steps", 0):
            return "running: starting"
        text = (
            f"running: image {progress.image_index + 1}/{progress.image_count}, "
            f"step {progress.step}/{progress.steps}, {progress.fraction * 100:.0f}%"
        )
        eta = progress.eta_seconds
        if eta is not None:
            text += f", ETA {eta:.0f}s"
        return text
    error = getattr(job, "error", None)
    return f"{status}: {error}" if error else status


def job_result(job):
    return getattr(job, "result", None)


def native_size(services, title: str | None) -> tuple[int, int]:
    """Width and height a checkpoint was trained at (512x512 when unknown), for the size sliders."""
    try:
        return services.catalog.find_checkpoint(title).native_size if title else (512, 512)
    except Exception:
        return 512, 512
