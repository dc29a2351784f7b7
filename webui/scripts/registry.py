"""The scripts we ship, found by key or A1111 title, read from A1111's positional ``script_args`` or named fields."""
from __future__ import annotations

from webui.schemas import InvalidRequest
from webui.scripts.base import ScriptSpec
from webui.scripts.img2img_scripts import Outpainting, PoorMansOutpainting, SDUpscale
from webui.scripts.prompt_scripts import Loopback, PromptMatrix, PromptsFromFile
from webui.scripts.xyz import XYZPlot

# In A1111's dropdown order.
SCRIPTS: tuple[type[ScriptSpec], ...] = (PromptMatrix, PromptsFromFile, XYZPlot, Loopback, Outpainting,
                                         PoorMansOutpainting, SDUpscale)


def find_script(name: str) -> type[ScriptSpec] | None:
    """The script with this key or title (case-insensitive, as A1111 matches ``script_name``)."""
    wanted = str(name or "").strip().lower()
    return next((s for s in SCRIPTS if wanted in (s.key, s.title.lower())), None)


def scripts_for(mode: str) -> list[type[ScriptSpec]]:
    """The scripts of one tab: ``txt2img`` or ``img2img`` (inpaint is the img2img tab)."""
    return [s for s in SCRIPTS if mode in s.modes]


def resolve_script(name: str, args, mode: str, request, env) -> tuple[str, dict]:
    """``(key, values)`` for a request's ``script_name`` and ``script_args``; InvalidRequest (422) otherwise.

    ``args`` is A1111's positional list or our object of named fields; ``mode``
    is the job's (txt2img, img2img, inpaint); ``env`` gives what checks need
    (``catalog``, ``upscalers``).
    """
    spec = find_script(name)
    tab = "txt2img" if mode == "txt2img" else "img2img"
    if spec is None or mode not in spec.modes:
        known = ", ".join(s.title for s in scripts_for(mode))
        raise InvalidRequest(f"script_name: no {tab} script named {name!r} on this server; known: {known}",
                             field="script_name")
    if isinstance(args, dict):
        values = spec.from_named(args, "script_args")
    else:
        values = spec.from_args(list(args or [])[:len(spec.params)], "script_args")
    return spec.key, spec.prepare(values, request, env)


def script_titles(img2img: bool) -> list[str]:
    """Titles as A1111's ``/sdapi/v1/scripts`` lists selectable scripts (lower case) for one tab."""
    return [s.title.lower() for s in scripts_for("img2img" if img2img else "txt2img")]


def script_info() -> list[dict]:
    """A1111's ``/sdapi/v1/script-info`` entries of the selectable scripts, args in positional order."""
    entries = []
    for img2img in (False, True):
        for spec in scripts_for("img2img" if img2img else "txt2img"):
            entries.append({"name": spec.title.lower(), "is_alwayson": False, "is_img2img": img2img,
                            "args": spec.args_info()})
    return entries
