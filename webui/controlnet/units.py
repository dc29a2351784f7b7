"""ControlNet units as sd-webui-controlnet's API sends them: fields, defaults, codes, infotext.

Pure Python and PIL: the API, the UI, the engine and infotext parsing share it.
A unit arrives as a dict (``alwayson_scripts.controlnet.args[i]``) with the
extension's field names, or its older ones (``input_image``, ``guessmode``,
``lowvram``); enum fields take the extension's names or their numbers.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Callable

from PIL import Image

from webui.schemas import InvalidRequest

SCRIPT_TITLES = ("controlnet", "controlnet m2m")  # alwayson_scripts keys the extension answers to (any case)
UNIT_COUNT = 3  # tabs in the UI, the extension's default "Multi-ControlNet: Max models amount"

RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
RESIZE_ALIASES = {"envelope (outer fit)": "Resize and Fill", "scale to fit (inner fit)": "Crop and Resize",
                  "inner fit": "Crop and Resize", "outer fit": "Resize and Fill"}
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")

# Fields the extension accepts that change nothing here (memory hints, batch folders, other add-ons).
IGNORED_FIELDS = frozenset({
    "low_vram", "lowvram", "input_mode", "batch_images", "output_dir", "loopback", "save_detected_map",
    "hr_option", "is_ui", "batch_image_dir", "batch_mask_dir", "batch_input_gallery", "batch_mask_gallery",
    "generated_image", "use_preview_as_input", "union_control_type", "inpaint_crop_input_image",
    "advanced_weighting", "effective_region_mask", "pulid_mode", "ipadapter_input", "image_fidelity",
    "animatediff_batch", "batch_modifiers", "accepts_multiple_inputs", "preprocessor_preview",
})


@dataclass
class ControlUnit:
    """One ControlNet unit with the extension's field names and API defaults."""

    enabled: bool = True
    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    image: Image.Image | None = None
    mask: Image.Image | None = None
    resize_mode: str = "Crop and Resize"
    processor_res: int = -1  # -1: the preprocessor's default (512)
    threshold_a: float = -1.0  # -1: the preprocessor's default
    threshold_b: float = -1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: str = "Balanced"

    def to_dict(self) -> dict:
        """Field name -> value (the images as they are, not copied)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def active(self) -> bool:
        """Whether the unit steers generation: enabled, with a model."""
        return bool(self.enabled) and self.model not in ("", "None", None)


FIELD_NAMES = tuple(f.name for f in fields(ControlUnit))


def with_mask_as_input(unit: ControlUnit) -> ControlUnit:
    """The unit as the extension runs a drawn mask: strokes on the unit's canvas become the control image.

    A mask that is neither all black nor all white replaces the image (white strokes on black, the
    scribble a user drew) and the preprocessor becomes "none"; a blank or full mask changes nothing.
    """
    if unit.mask is None:
        return unit
    grey = unit.mask.convert("L")
    low, high = grey.getextrema()
    if (low, high) in ((0, 0), (255, 255)):
        return dataclasses.replace(unit, mask=None)
    return dataclasses.replace(unit, image=grey.convert("RGB"), module="none", mask=None)


def _number(value, where: str, low: float, high: float, whole: bool = False):
    try:
        if isinstance(value, bool) or value is None:
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{where} must be a number, not {value!r}", field=where) from None
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidRequest(f"{where} must be from {low} to {high}", field=where)
    return int(number) if whole else number


def _flag(value, where: str) -> bool:
    if isinstance(value, str):
        if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise InvalidRequest(f"{where} must be true or false", field=where)
        return value.strip().lower() in ("true", "1", "yes", "on")
    if not isinstance(value, (bool, int, float)):
        raise InvalidRequest(f"{where} must be true or false", field=where)
    return bool(value)


def _choice(value, names: tuple[str, ...], where: str, aliases: dict | None = None) -> str:
    """An enum by the extension's name (any case), its Python name, or its number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and int(value) == value \
            and 0 <= int(value) < len(names):
        return names[int(value)]
    text = str(value).strip()
    if text.isdigit() and int(text) < len(names):
        return names[int(text)]
    lowered = text.lower().replace("_", " ")
    for name in names:
        if name.lower() == lowered:
            return name
    if aliases and lowered in aliases:
        return aliases[lowered]
    python_names = {"resize": "Just Resize", "inner fit": "Crop and Resize", "outer fit": "Resize and Fill",
                    "balanced": "Balanced", "prompt": "My prompt is more important",
                    "control": "ControlNet is more important"}
    if python_names.get(lowered) in names:
        return python_names[lowered]
    raise InvalidRequest(f"{where} must be one of {', '.join(names)}", field=where)


ImageDecoder = Callable[[Any, str], Image.Image]


def _images(raw: dict, where: str, decode: ImageDecoder) -> tuple[Image.Image | None, Image.Image | None]:
    """The unit's image and mask: ``image`` (or ``input_image``) as base64, a PIL image, or
    ``{"image": ..., "mask": ...}`` as the extension's gradio state sends it; ``mask`` beside it."""
    value = raw.get("image", raw.get("input_image"))
    mask = raw.get("mask") or raw.get("mask_image")
    if isinstance(value, dict):
        mask = value.get("mask") or mask
        value = value.get("image")
    elif isinstance(value, (list, tuple)):
        value = value[0] if value else None
    image = None
    if value is not None and value != "":
        image = value if isinstance(value, Image.Image) else decode(value, f"{where}.image")
    if mask is not None and mask != "":
        mask = mask if isinstance(mask, Image.Image) else decode(mask, f"{where}.mask")
    else:
        mask = None
    return image, mask


def parse_unit(raw, where: str, decode: ImageDecoder) -> tuple[ControlUnit, list[str]]:
    """A validated unit from the extension's dict, and warnings for fields that do nothing here."""
    if isinstance(raw, ControlUnit):
        return raw, []
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where} must be an object of unit fields (the extension's ControlNetUnit)",
                             field=where)
    warnings = []
    unknown = set(raw) - set(FIELD_NAMES) - IGNORED_FIELDS - {"input_image", "guessmode", "mask_image"}
    if unknown:
        warnings.append(f"ControlNet: unit field(s) {', '.join(sorted(unknown))} not supported; ignored")
    unit = ControlUnit()
    image, mask = _images(raw, where, decode)
    unit.image, unit.mask = image, mask
    if "enabled" in raw:
        unit.enabled = _flag(raw["enabled"], f"{where}.enabled")
    for name in ("module", "model"):
        if raw.get(name) is not None:
            unit.__dict__[name] = str(raw[name]).strip() or ("none" if name == "module" else "None")
    if raw.get("weight") is not None:
        unit.weight = _number(raw["weight"], f"{where}.weight", 0.0, 2.0)
    if raw.get("resize_mode") is not None:
        unit.resize_mode = _choice(raw["resize_mode"], RESIZE_MODES, f"{where}.resize_mode", RESIZE_ALIASES)
    if raw.get("control_mode") is not None:
        unit.control_mode = _choice(raw["control_mode"], CONTROL_MODES, f"{where}.control_mode")
    elif raw.get("guessmode"):  # the extension's oldest API: guess mode is "ControlNet is more important"
        unit.control_mode = CONTROL_MODES[2]
    if raw.get("processor_res") is not None:
        unit.processor_res = _number(raw["processor_res"], f"{where}.processor_res", -1, 4096, whole=True)
    for name in ("threshold_a", "threshold_b"):
        if raw.get(name) is not None:
            unit.__dict__[name] = _number(raw[name], f"{where}.{name}", -1.0, 4096.0)
    for name in ("guidance_start", "guidance_end"):
        if raw.get(name) is not None:
            unit.__dict__[name] = _number(raw[name], f"{where}.{name}", 0.0, 1.0)
    if unit.guidance_start > unit.guidance_end:
        raise InvalidRequest(f"{where}.guidance_start must not be after guidance_end", field=f"{where}.guidance_start")
    if raw.get("pixel_perfect") is not None:
        unit.pixel_perfect = _flag(raw["pixel_perfect"], f"{where}.pixel_perfect")
    return unit, warnings


def find_controlnet_args(alwayson_scripts: dict | None) -> tuple[str, list] | None:
    """(title as sent, the units list) of the ControlNet entry of ``alwayson_scripts``, or None."""
    for title, entry in (alwayson_scripts or {}).items():
        if str(title).strip().lower() in SCRIPT_TITLES:
            args = entry.get("args", []) if isinstance(entry, dict) else entry
            if not isinstance(args, (list, tuple)):
                raise InvalidRequest("alwayson_scripts.controlnet.args must be a list of units",
                                     field="alwayson_scripts.controlnet.args")
            return str(title), list(args)
    return None


def parse_units(args: list, decode: ImageDecoder) -> tuple[list[ControlUnit], list[str]]:
    """Every unit of ``alwayson_scripts.controlnet.args``; units that are off are kept (they write no infotext)."""
    units, warnings = [], []
    for index, raw in enumerate(args):
        unit, notes = parse_unit(raw, f"alwayson_scripts.controlnet.args[{index}]", decode)
        units.append(unit)
        warnings.extend(notes)
    return units, warnings


# ---------------------------------------------------------------- infotext
INFOTEXT_FIELDS = (("Module", "module"), ("Model", "model"), ("Weight", "weight"), ("Resize Mode", "resize_mode"),
                   ("Processor Res", "processor_res"), ("Threshold A", "threshold_a"),
                   ("Threshold B", "threshold_b"), ("Guidance Start", "guidance_start"),
                   ("Guidance End", "guidance_end"), ("Pixel Perfect", "pixel_perfect"),
                   ("Control Mode", "control_mode"))


def unit_infotext(unit: ControlUnit, model_title: str | None = None) -> str:
    """The value of "ControlNet N" as the extension writes it: ``Module: canny, Model: name [hash], ...``."""
    values = unit.to_dict()
    values.update(weight=float(unit.weight), threshold_a=float(unit.threshold_a), threshold_b=float(unit.threshold_b),
                  guidance_start=float(unit.guidance_start), guidance_end=float(unit.guidance_end))
    if model_title:
        values["model"] = model_title
    return ", ".join(f"{label}: {values[name]}" for label, name in INFOTEXT_FIELDS)


def units_infotext(units: list[tuple[ControlUnit, str]]) -> dict:
    """``{"ControlNet 0": ..., "ControlNet 1": ...}`` for the units that ran, numbered as the extension does."""
    return {f"ControlNet {i}": unit_infotext(unit, title) for i, (unit, title) in enumerate(units)}


def units_from_infotext(parsed: dict) -> list[ControlUnit]:
    """The units a parsed infotext records (no images: PNG Info and Send to restore the settings)."""
    units = []
    index = 0
    while f"ControlNet {index}" in parsed:
        text = str(parsed[f"ControlNet {index}"])
        values = {}
        for part in text.split(", "):
            label, sep, value = part.partition(": ")
            if sep:
                values[label.strip()] = value.strip()
        by_label = dict(INFOTEXT_FIELDS)
        raw = {by_label[label]: value for label, value in values.items() if label in by_label}
        try:
            unit, _ = parse_unit(raw, f"ControlNet {index}", lambda value, where: None)
        except InvalidRequest:
            unit = ControlUnit(module=raw.get("module", "none"), model=raw.get("model", "None"))
        units.append(unit)
        index += 1
    return units
