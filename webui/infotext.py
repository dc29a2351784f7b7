"""A1111's infotext: the generation parameters written under an image and into its PNG chunk.

Layout (what A1111 writes and what every tool that reads its images expects)::

    a prompt, possibly
    on several lines
    Negative prompt: a negative prompt
    Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1234, Size: 512x512, ...

The last line is a comma-separated list of ``Key: value`` pairs. A value holding a
comma, a colon, a quote or a line break is written as a JSON string. Standard
library only: the engine, the UI and the API all use it.
"""
from __future__ import annotations

import json
import re

NEGATIVE_PREFIX = "Negative prompt:"
# A key starts with a word character and may hold spaces, dashes and slashes ("Hires resize", "Size-1").
_KEY = re.compile(r"\s*(\w[\w \-/]*?)\s*:\s*")
_SIZE = re.compile(r"^(\d+)x(\d+)$")
# A line counts as the parameter line only when it holds at least this many pairs
# (as A1111 decides it), so a prompt that happens to contain "a: b" stays a prompt.
_MIN_PARAMS = 3


# ---------------------------------------------------------------- writing
def _format_value(value) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def quote_value(value) -> str:
    """A value as infotext writes it: JSON-quoted when it holds ``,`` ``:`` ``"`` or a line break."""
    text = _format_value(value)
    if any(ch in text for ch in ',:"\n\r') or text != text.strip():
        return json.dumps(text, ensure_ascii=False)
    return text


def _join_split_sizes(fields: dict) -> dict:
    """Turn ``Size-1``/``Size-2`` pairs (as the parser returns them) back into ``Size: WxH``."""
    out: dict = {}
    for key, value in fields.items():
        base, _, index = key.rpartition("-")
        if index in ("1", "2") and base and base not in fields and f"{base}-1" in fields and f"{base}-2" in fields:
            width, height = fields[f"{base}-1"], fields[f"{base}-2"]
            if index == "1" and width is not None and height is not None:
                out[base] = f"{_format_value(width)}x{_format_value(height)}"
            continue
        out[key] = value
    return out


def format_parameters(fields: dict) -> str:
    """The parameter line alone: ``Steps: 20, Sampler: Euler a, ...`` (None values left out).

    A value equal to its key is written bare, as A1111 does for flags.
    """
    parts = []
    for key, value in _join_split_sizes(fields).items():
        if value is None:
            continue
        if isinstance(value, str) and value == key:
            parts.append(key)
        else:
            parts.append(f"{key}: {quote_value(value)}")
    return ", ".join(parts)


def format_infotext(prompt: str, negative_prompt: str, fields: dict) -> str:
    """The full infotext: prompt, ``Negative prompt:`` line when there is one, then the parameter line.

    >>> format_infotext("a cat", "", {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7.0, "Seed": 1, "Size": "64x64"})
    'a cat\\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64'
    """
    lines = [prompt or ""]
    if negative_prompt:
        lines.append(f"{NEGATIVE_PREFIX} {negative_prompt}")
    params = format_parameters(fields)
    if params:
        lines.append(params)
    return "\n".join(lines).strip()


# ---------------------------------------------------------------- reading
def _read_quoted(line: str, start: int) -> tuple[str, int] | None:
    """Read a JSON string starting at ``line[start] == '"'``; (text, index after it) or None."""
    i = start + 1
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            raw = line[start:i + 1]
            try:
                return json.loads(raw), i + 1
            except ValueError:
                return raw, i + 1
        i += 1
    return None


def parse_parameters(line: str) -> list[tuple[str, str]]:
    """Split a parameter line into ``(key, value)`` pairs, unquoting JSON-quoted values.

    Text that does not look like ``Key: value`` (a bare flag, stray words) is skipped.
    """
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(line):
        match = _KEY.match(line, pos)
        if not match:
            comma = line.find(",", pos)
            if comma < 0:
                break
            pos = comma + 1
            continue
        key = match.group(1).strip()
        pos = match.end()
        value: str
        if pos < len(line) and line[pos] == '"':
            quoted = _read_quoted(line, pos)
            if quoted is not None:
                value, after = quoted
                rest = line[after:].lstrip()
                if not rest or rest.startswith(","):
                    pairs.append((key, value))
                    pos = len(line) - len(rest) + 1
                    continue
        comma = line.find(",", pos)
        end = len(line) if comma < 0 else comma
        value = line[pos:end].strip()
        pairs.append((key, value))
        pos = end + 1
    return pairs


def parse_infotext(text: str) -> dict:
    """Parse infotext into a dict like A1111's ``parse_generation_parameters``.

    Keys: ``Prompt``, ``Negative prompt`` and every field of the parameter line,
    with values as strings. A ``WxH`` value is split into ``<key>-1`` and
    ``<key>-2`` (``Size-1``, ``Size-2``, ``Hires resize-1`` ...). Only what the
    text holds is returned (no defaults filled in).
    """
    result: dict = {}
    lines = (text or "").strip().replace("\r\n", "\n").split("\n")
    params_line = ""
    if lines and len(parse_parameters(lines[-1])) >= _MIN_PARAMS:
        params_line = lines.pop()
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith(NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PREFIX):].strip()
        (negative if in_negative else prompt).append(line)
    result["Prompt"] = "\n".join(prompt)
    result["Negative prompt"] = "\n".join(negative)
    for key, value in parse_parameters(params_line):
        size = _SIZE.match(value)
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.group(1), size.group(2)
        else:
            result[key] = value
    return result


# ---------------------------------------------------------------- back to a request
def _to_int(value):
    return int(float(value))


def _to_bool(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes", "on")


# infotext key -> (GenerationRequest field, converter)
_REQUEST_FIELDS: dict[str, tuple[str, object]] = {
    "Prompt": ("prompt", str),
    "Negative prompt": ("negative_prompt", str),
    "Steps": ("steps", _to_int),
    "Sampler": ("sampler_name", str),
    "Schedule type": ("scheduler", str),
    "CFG scale": ("cfg_scale", float),
    "Seed": ("seed", _to_int),
    "Size-1": ("width", _to_int),
    "Size-2": ("height", _to_int),
    "Batch size": ("batch_size", _to_int),
    "Clip skip": ("clip_skip", _to_int),
    "Denoising strength": ("denoising_strength", float),
    "Hires upscale": ("hr_scale", float),
    "Hires upscaler": ("hr_upscaler", str),
    "Hires steps": ("hr_second_pass_steps", _to_int),
    "Hires resize-1": ("hr_resize_x", _to_int),
    "Hires resize-2": ("hr_resize_y", _to_int),
    "Mask blur": ("mask_blur", _to_int),
    "Variation seed": ("subseed", _to_int),
    "Variation seed strength": ("subseed_strength", float),
    "Seed resize from-1": ("seed_resize_from_w", _to_int),
    "Seed resize from-2": ("seed_resize_from_h", _to_int),
    "RNG": ("randn_source", str),
    "ENSD": ("eta_noise_seed_delta", _to_int),
    "VAE": ("vae", str),
    "Face restoration": ("face_restorer", str),
    "Tiling": ("tiling", _to_bool),
}


def request_field_keys() -> set[str]:
    """The parsed-infotext keys that ``infotext_to_request_fields`` turns into request fields."""
    return set(_REQUEST_FIELDS)


# infotext key -> A1111 option key of a sampler setting (A1111's infotext_to_setting_name_mapping)
_SAMPLER_SETTINGS: dict[str, tuple[str, object]] = {
    "Eta": ("eta_ancestral", float), "Eta DDIM": ("eta_ddim", float), "Sigma churn": ("s_churn", float),
    "Sigma tmin": ("s_tmin", float), "Sigma tmax": ("s_tmax", float), "Sigma noise": ("s_noise", float),
    "Schedule min sigma": ("sigma_min", float), "Schedule max sigma": ("sigma_max", float),
    "Schedule rho": ("rho", float), "Discard penultimate sigma": ("always_discard_next_to_last_sigma", _to_bool),
    "SGM noise multiplier": ("sgm_noise_multiplier", _to_bool), "NGMS": ("s_min_uncond", float),
    "Beta schedule alpha": ("beta_dist_alpha", float), "Beta schedule beta": ("beta_dist_beta", float),
    "CFG Rescale phi": ("cfg_rescale_phi", float),
}


def infotext_to_request_fields(parsed: dict) -> dict:
    """Map parsed infotext (``parse_infotext``'s output) to ``GenerationRequest`` field names.

    Used by "Send to txt2img" and PNG Info. Values that do not convert are left
    out rather than guessed; ``checkpoint`` is the model hash when the text has
    one (the catalog resolves a short hash), else the model name.
    """
    fields: dict = {}
    for key, (name, convert) in _REQUEST_FIELDS.items():
        if key not in parsed or parsed[key] in (None, ""):
            if key in ("Prompt", "Negative prompt") and key in parsed:
                fields[name] = ""
            continue
        try:
            fields[name] = convert(parsed[key])
        except (TypeError, ValueError):
            continue
    overrides = {}
    for key, (option, convert) in _SAMPLER_SETTINGS.items():
        if parsed.get(key) not in (None, ""):
            try:
                overrides[option] = convert(parsed[key])
            except (TypeError, ValueError):
                continue
    if overrides:
        fields["sampler_overrides"] = overrides
    if "Face restoration" in parsed:
        fields["restore_faces"] = True
    if any(k in fields for k in ("hr_scale", "hr_upscaler", "hr_second_pass_steps")) or fields.get("hr_resize_x"):
        fields["enable_hr"] = True
    checkpoint = parsed.get("Model hash") or parsed.get("Model")
    if checkpoint:
        fields["checkpoint"] = str(checkpoint)
    if "Clip skip" not in parsed and "Steps" in parsed:
        fields["clip_skip"] = 1  # A1111 leaves the default out of the text
    return fields
