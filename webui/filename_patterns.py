"""A1111's file and folder name patterns: ``[seed]-[prompt_spaces]``, ``[date]``, ``[datetime<%H><UTC>]``...

``apply_pattern(pattern, context)`` expands the tags A1111 1.10 documents
(``modules/images.py`` FilenameGenerator, and the wiki page "Custom Images
Filename Name and Subdirectory") with the same values: unknown tags stay as
written, a tag with nothing to say (``[seed_last]`` for one image,
``[batch_number]`` for a batch of one, ``[denoising]`` in txt2img) disappears
together with the text just before it, text values are cleaned as A1111's
``sanitize_filename_part`` does. The result may still hold ``/`` written in
the pattern itself (folders); :mod:`webui.filenames` makes it safe.
"""
from __future__ import annotations

import datetime
import hashlib
import re
import string
import zoneinfo
from dataclasses import dataclass, field

from PIL import Image

MAX_PART_LENGTH = 128  # A1111's --filenames-max-length default
DEFAULT_TIME_FORMAT = "%Y%m%d%H%M%S"
INVALID_PART_CHARS = '#<>:"/\\|?*\n\r\t'
_NONLETTERS = re.compile(r"[\s" + re.escape(string.punctuation) + r"]+")
_PATTERN = re.compile(r"(.*?)(?:\[([^\[\]]+)\]|$)", re.DOTALL)
_PATTERN_ARG = re.compile(r"(.*)<([^>]*)>$", re.DOTALL)
_SKIP = object()  # the tag and the text before it vanish


@dataclass
class NameContext:
    """What one saved image knows about itself, for the pattern tags (A1111's ``p``, seed, prompt, image)."""

    seed: int | None = None
    all_seeds: list[int] = field(default_factory=list)
    prompt: str = ""  # the full prompt (styles applied), as in the infotext
    negative_prompt: str = ""
    styles: list[str] = field(default_factory=list)
    style_prompts: list[str] = field(default_factory=list)  # the chosen styles' prompt texts
    steps: int | None = None
    cfg_scale: float | None = None
    sampler_name: str | None = None
    scheduler: str | None = None  # the schedule actually used ("Karras"...), not "Automatic"
    model_hash: str | None = None
    model_name: str | None = None
    vae_filename: str | None = None  # file name of the VAE in use, None when the checkpoint's own
    denoising_strength: float | None = None  # None when it played no part (txt2img without hires)
    clip_skip: int | None = None
    batch_size: int = 1
    n_iter: int = 1
    batch_index: int = 0
    iteration: int = 0
    job_timestamp: str = ""
    user: str | None = None
    image: Image.Image | None = None
    grid: bool = False
    now: datetime.datetime | None = None  # fixed clock for [date]/[datetime] (tests); None = now


def sanitize_part(text: str | None, replace_spaces: bool = True) -> str | None:
    """A1111's ``sanitize_filename_part``: one tag's text made harmless and at most 128 characters."""
    if text is None:
        return None
    if replace_spaces:
        text = text.replace(" ", "_")
    text = text.translate({ord(c): "_" for c in INVALID_PART_CHARS})
    return text.lstrip(" ")[:MAX_PART_LENGTH].rstrip(" .")


def _now(ctx: NameContext) -> datetime.datetime:
    return ctx.now or datetime.datetime.now().astimezone()


def _datetime(ctx: NameContext, *args) -> str:
    time_format = args[0] if args and args[0] else DEFAULT_TIME_FORMAT
    zone = None
    if len(args) > 1:
        try:
            zone = zoneinfo.ZoneInfo(args[1])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = None  # unknown zone: local time, as A1111
    moment = _now(ctx).astimezone(zone)
    try:
        text = moment.strftime(time_format)
    except (ValueError, TypeError):
        text = moment.strftime(DEFAULT_TIME_FORMAT)
    return sanitize_part(text, replace_spaces=False)


def _string_hash(text: str, *args) -> str:
    length = int(args[0]) if args and args[0] else 8
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _image_hash(ctx: NameContext, *args) -> str | None:
    if ctx.image is None:
        return None
    length = int(args[0]) if args and args[0] else None
    return hashlib.sha256(ctx.image.tobytes()).hexdigest()[:length]


def _hasprompt(ctx: NameContext, *args) -> str:
    lower = ctx.prompt.lower()
    out = ""
    for arg in args:
        if not arg:
            continue
        expected, _, default = arg.partition("|")
        if expected.lower() in lower:
            out += expected.lower()
        elif default:
            out += default
    return sanitize_part(out)


def _prompt_no_styles(ctx: NameContext) -> str:
    text = ctx.prompt
    for style in ctx.style_prompts:
        if not style:
            continue
        for part in style.split("{prompt}"):
            text = text.replace(part, "").replace(", ,", ",").strip().strip(",")
        text = text.replace(style, "").strip().strip(",").strip()
    return sanitize_part(text, replace_spaces=False)


def _prompt_words(ctx: NameContext, max_words: int) -> str:
    words = [w for w in _NONLETTERS.split(ctx.prompt or "") if w] or ["empty"]
    return sanitize_part(" ".join(words[:max_words]), replace_spaces=False)


def _scheduler(ctx: NameContext) -> str | object:
    if not ctx.scheduler:
        return _SKIP
    return sanitize_part(ctx.scheduler.capitalize(), replace_spaces=False)


def _vae_filename(ctx: NameContext) -> str:
    if not ctx.vae_filename:
        return "NoneType"  # what A1111 writes when no separate VAE file is loaded
    parts = ctx.vae_filename.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "" else parts[0]


def _styles(ctx: NameContext) -> str:
    return sanitize_part(", ".join(s for s in ctx.styles if s != "None") or "None", replace_spaces=False)


def _generation_number(ctx: NameContext):
    if ctx.grid or (ctx.n_iter == 1 and ctx.batch_size == 1):
        return _SKIP
    return ctx.iteration * ctx.batch_size + ctx.batch_index + 1


TAGS = {
    "seed": lambda c: c.seed if c.seed is not None else "",
    "seed_first": lambda c: c.seed if c.batch_size == 1 else (c.all_seeds or [c.seed])[0],
    "seed_last": lambda c: _SKIP if c.batch_size == 1 else (c.all_seeds or [c.seed])[-1],
    "steps": lambda c: c.steps,
    "cfg": lambda c: c.cfg_scale,
    "width": lambda c: c.image.width if c.image is not None else None,
    "height": lambda c: c.image.height if c.image is not None else None,
    "styles": _styles,
    "sampler": lambda c: sanitize_part(c.sampler_name, replace_spaces=False),
    "scheduler": _scheduler,
    "sampler_scheduler": lambda c: _SKIP if not c.scheduler else sanitize_part(
        f"{c.sampler_name} {c.scheduler.capitalize()}", replace_spaces=False),
    "model_hash": lambda c: c.model_hash,
    "model_name": lambda c: sanitize_part(c.model_name, replace_spaces=False),
    "date": lambda c: _now(c).strftime("%Y-%m-%d"),
    "datetime": _datetime,
    "job_timestamp": lambda c: c.job_timestamp,
    "prompt_hash": lambda c, *a: _string_hash(c.prompt, *a),
    "negative_prompt_hash": lambda c, *a: _string_hash(c.negative_prompt, *a),
    "full_prompt_hash": lambda c, *a: _string_hash(f"{c.prompt} {c.negative_prompt}", *a),
    "prompt": lambda c: sanitize_part(c.prompt),
    "prompt_no_styles": _prompt_no_styles,
    "prompt_spaces": lambda c: sanitize_part(c.prompt, replace_spaces=False),
    "negative_prompt": lambda c: sanitize_part(c.negative_prompt),
    "batch_number": lambda c: _SKIP if c.batch_size == 1 or c.grid else c.batch_index + 1,
    "batch_size": lambda c: c.batch_size,
    "generation_number": _generation_number,
    "hasprompt": _hasprompt,
    "clip_skip": lambda c: c.clip_skip,
    "denoising": lambda c: c.denoising_strength if c.denoising_strength else _SKIP,
    "user": lambda c: c.user,
    "vae_filename": _vae_filename,
    "none": lambda c: "",
    "image_hash": _image_hash,
}
TAG_NAMES = tuple(sorted([*TAGS, "prompt_words"]))


def apply_pattern(pattern: str, ctx: NameContext, *, max_prompt_words: int = 8) -> str:
    """Expand every ``[tag]`` (and ``[tag<arg><arg>]``) in ``pattern`` for one image, as A1111 does."""
    out = ""
    for match in _PATTERN.finditer(pattern):
        text, tag = match.groups()
        if tag is None:
            out += text
            continue
        args = []
        while (arg_match := _PATTERN_ARG.match(tag)) is not None:
            tag, arg = arg_match.groups()
            args.insert(0, arg)
        name = tag.lower()
        if name == "prompt_words":
            value = _prompt_words(ctx, max_prompt_words)
        elif name in TAGS:
            try:
                value = TAGS[name](ctx, *args)
            except (TypeError, ValueError, AttributeError, IndexError):
                value = None  # a tag given bad arguments stays as written
        else:
            value = None
        if value is _SKIP:
            continue
        if value is not None:
            out += text + str(value)
            continue
        out += f"{text}[{tag}]"
    return out
