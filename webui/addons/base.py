"""The plugin interface: an add-on is a title, typed fields in A1111's argument order, and infotext keys."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from webui.schemas import InvalidRequest


@dataclass(frozen=True)
class Param:
    """One field of an add-on: its name in our API, its UI label and default, limits, infotext key."""

    name: str
    label: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    infotext: str | None = None  # key in the infotext; None: not written
    step: float | None = None  # UI slider step

    def coerce(self, value, where: str):
        """The value as this field's type, or InvalidRequest naming ``where``."""
        kind = type(self.default)
        if kind in (list, tuple):  # a multi-choice field (A1111's CheckboxGroup or multiselect Dropdown)
            if value is None or isinstance(value, str):
                value = [value] if value else []
            if not isinstance(value, (list, tuple)):
                raise InvalidRequest(f"{where} must be a list, not {value!r}", field=where)
            items = [str(v) for v in value]
            if self.choices is not None:
                bad = [v for v in items if v not in self.choices]
                if bad:
                    raise InvalidRequest(f"{where}: {', '.join(bad)} not among {', '.join(self.choices)}",
                                         field=where)
            return items
        try:
            if kind is bool:
                if isinstance(value, str):
                    if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                        raise ValueError(value)
                    value = value.strip().lower() in ("true", "1", "yes", "on")
                elif not isinstance(value, (bool, int, float)):
                    raise ValueError(value)
                return bool(value)
            if kind in (int, float):
                if isinstance(value, bool) or value is None:
                    raise ValueError(value)
                number = float(value)
                if not math.isfinite(number):
                    raise ValueError(value)
                if self.minimum is not None and number < self.minimum or \
                        self.maximum is not None and number > self.maximum:
                    raise InvalidRequest(f"{where} must be from {self.minimum} to {self.maximum}", field=where)
                return int(number) if kind is int else number
            text = str(value)
        except (TypeError, ValueError):
            raise InvalidRequest(f"{where} must be a {kind.__name__}, not {value!r}", field=where) from None
        if self.choices is not None:
            match = next((c for c in self.choices if c.lower() == text.strip().lower()), None)
            if match is None:
                raise InvalidRequest(f"{where} must be one of {', '.join(self.choices)}", field=where)
            return match
        return text


class AddonSpec:
    """What an add-on declares. The first parameter is always ``enabled``.

    ``key``: its name in our API (``addons: {key: {...}}``); ``title``: the original
    extension's title, matched case-insensitively in ``alwayson_scripts``;
    ``params``: fields in the order of the extension's positional ``args``.
    """

    key: ClassVar[str]
    title: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]
    aliases: ClassVar[tuple[str, ...]] = ()  # older titles of the same script
    # Where it works in the one denoising loop: "unet" (around each UNet call), "combine" (where CFG
    # combines the predictions, in x0 terms), "mask_blend" (the inpainting blend and the final composite).
    hooks: ClassVar[tuple[str, ...]] = ()
    modes: ClassVar[tuple[str, ...]] = ("txt2img", "img2img", "inpaint")

    @classmethod
    def is_enabled(cls, values: dict) -> bool:
        return bool(values["enabled"])

    @classmethod
    def defaults(cls) -> dict:
        return {p.name: p.default for p in cls.params}

    @classmethod
    def from_named(cls, given: dict, where: str) -> dict:
        """Validated values from named fields; missing ones take the UI defaults."""
        if not isinstance(given, dict):
            raise InvalidRequest(f"{where} must be an object of named fields", field=where)
        known = {p.name: p for p in cls.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise InvalidRequest(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}",
                                 field=where)
        values = cls.defaults()
        values.update({name: known[name].coerce(value, f"{where}.{name}") for name, value in given.items()})
        return values

    @classmethod
    def from_args(cls, args, where: str) -> dict:
        """Validated values from A1111's positional ``args``; missing trailing ones take the UI defaults."""
        if not isinstance(args, (list, tuple)):
            raise InvalidRequest(f"{where} must be a list", field=where)
        return cls.from_named({p.name: v for p, v in zip(cls.params, args)}, where)

    @classmethod
    def args_info(cls) -> list[dict]:
        """The fields as A1111's ``/sdapi/v1/script-info`` lists a script's args, in positional order."""
        return [{"label": p.label, "value": p.default, "minimum": p.minimum, "maximum": p.maximum,
                 "step": p.step, "choices": list(p.choices) if p.choices else None} for p in cls.params]

    @classmethod
    def infotext(cls, values: dict) -> dict:
        """Infotext fields for enabled values (the extension's keys)."""
        return {p.infotext: values[p.name] for p in cls.params if p.infotext}

    @classmethod
    def from_infotext(cls, parsed: dict) -> dict | None:
        """Values read back from parsed infotext, or None when the text does not enable this add-on."""
        enabled = cls.params[0]
        if enabled.infotext not in parsed or not enabled.coerce(parsed[enabled.infotext], enabled.infotext):
            return None
        values = cls.defaults()
        for p in cls.params:
            if p.infotext and p.infotext in parsed:
                try:
                    values[p.name] = p.coerce(parsed[p.infotext], p.infotext)
                except InvalidRequest:
                    continue  # a value we cannot read keeps the default, as A1111's paste does
        return values
