"""Finding add-ons by key or title and reading them from requests and infotext."""
from __future__ import annotations

from webui.addons.base import AddonSpec
from webui.addons.specs import CFGRescale, DynamicThresholding, FreeU, PerturbedAttention, SoftInpainting
from webui.controlnet.units import SCRIPT_TITLES as CONTROLNET_TITLES
from webui.schemas import InvalidRequest

ADDONS: tuple[type[AddonSpec], ...] = (DynamicThresholding, CFGRescale, FreeU, PerturbedAttention, SoftInpainting)


def find_addon(name: str) -> type[AddonSpec] | None:
    """The add-on with this key, title or older title (case-insensitive, as A1111 matches titles)."""
    wanted = str(name).strip().lower()
    for spec in ADDONS:
        if wanted in (spec.key, spec.title.lower(), *(a.lower() for a in spec.aliases)):
            return spec
    return None


def resolve_addons(named: dict | None, alwayson_scripts: dict | None) -> tuple[dict[str, dict], list[str]]:
    """The enabled add-ons of a request as ``{key: values}``, and warnings.

    ``alwayson_scripts`` is A1111's ``{"Title": {"args": [...]}}``; ``named`` is
    ours, ``{key: {field: value}}``, and wins for the same add-on. Unknown titles
    are warned about and ignored (A1111 ignores them too); bad values raise
    InvalidRequest.
    """
    values: dict[str, dict] = {}
    warnings: list[str] = []
    if alwayson_scripts and not isinstance(alwayson_scripts, dict):
        raise InvalidRequest("alwayson_scripts must be an object of {title: {args: [...]}}", field="alwayson_scripts")
    for title, entry in (alwayson_scripts or {}).items():
        if str(title).strip().lower() in CONTROLNET_TITLES:
            continue  # ControlNet units are read by webui.controlnet
        spec = find_addon(title)
        if spec is None or spec.key == str(title).strip().lower():
            warnings.append(f"alwayson_scripts: no script titled {title!r} here; ignored")
            continue
        where = f"alwayson_scripts.{title}.args"
        args = entry.get("args", []) if isinstance(entry, dict) else entry
        if isinstance(args, (list, tuple)) and len(args) > len(spec.params):
            warnings.append(f"{spec.title}: only the first {len(spec.params)} args are supported; "
                            f"{len(args) - len(spec.params)} more ignored")
            args = list(args)[:len(spec.params)]
        values[spec.key] = spec.from_args(args, where)
    if named and not isinstance(named, dict):
        raise InvalidRequest("addons must be an object of {name: {field: value}}", field="addons")
    for key, given in (named or {}).items():
        spec = find_addon(key)
        if spec is None:
            known = ", ".join(s.key for s in ADDONS)
            raise InvalidRequest(f"addons: unknown add-on {key!r}; known: {known}", field="addons")
        values[spec.key] = spec.from_named(given, f"addons.{spec.key}")
    enabled = {key: v for key, v in values.items() if find_addon(key).is_enabled(v)}
    return enabled, warnings


def addons_infotext(active: dict[str, dict]) -> dict:
    """Infotext fields of the enabled add-ons, each with its extension's keys."""
    fields: dict = {}
    for key, values in active.items():
        fields.update(find_addon(key).infotext(values))
    return fields


def addons_from_infotext(parsed: dict) -> dict[str, dict]:
    """The add-ons a parsed infotext enables, as named values (for PNG Info and "send to")."""
    found = {}
    for spec in ADDONS:
        values = spec.from_infotext(parsed)
        if values is not None:
            found[spec.key] = values
    return found


def script_titles(img2img: bool) -> list[str]:
    """The add-ons' titles as A1111's ``/sdapi/v1/scripts`` lists them (lower case) for one tab."""
    modes = {"img2img", "inpaint"} if img2img else {"txt2img"}
    return [spec.title.lower() for spec in ADDONS if modes & set(spec.modes)] + [CONTROLNET_TITLES[0]]


def script_info() -> list[dict]:
    """A1111's ``/sdapi/v1/script-info``: each add-on per tab, its args in positional order with UI defaults."""
    entries = []
    for img2img in (False, True):
        for spec in ADDONS:
            if spec.title.lower() not in script_titles(img2img):
                continue
            entries.append({"name": spec.title.lower(), "is_alwayson": True, "is_img2img": img2img,
                            "args": spec.args_info()})
    return entries
