"""The X/Y/Z plot's axes in A1111 1.10's order, so positional axis indices mean what they mean there.

Each axis says how a value changes a GenerationRequest. An axis this server
cannot honour keeps its place in the list (indices stay A1111's) and carries
the reason it is refused.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import permutations
from typing import Callable

from webui import vocabulary
from webui.schemas import GenerationRequest, InvalidRequest, NotFound


def _set(name: str):
    def apply(request: GenerationRequest, value, all_values) -> None:
        setattr(request, name, value)
    return apply


def _sampler_option(key: str, boolean: bool = False):
    def apply(request: GenerationRequest, value, all_values) -> None:
        request.sampler_overrides = {**request.sampler_overrides,
                                     key: (str(value).lower() == "true") if boolean else value}
    return apply


def _prompt_sr(request: GenerationRequest, value, all_values) -> None:
    request.prompt = request.prompt.replace(all_values[0], value)
    request.negative_prompt = request.negative_prompt.replace(all_values[0], value)


def _prompt_order(request: GenerationRequest, value, all_values) -> None:
    """Put the tokens of ``value`` into the prompt in that order, where the tokens first stood."""
    prompt = request.prompt
    positions = sorted((prompt.find(token), token) for token in value)
    parts = []
    for _, token in positions:
        at = prompt.find(token)
        parts.append(prompt[:at])
        prompt = prompt[at + len(token):]
    request.prompt = "".join(part + token for part, token in zip(parts, value)) + prompt


def _styles(request: GenerationRequest, value, all_values) -> None:
    request.styles = [*request.styles, *value.split(",")]


def _face_restore(request: GenerationRequest, value, all_values) -> None:
    choice = str(value).lower()
    if choice in ("codeformer", "gfpgan"):
        request.restore_faces, request.face_restorer = True, "CodeFormer" if choice == "codeformer" else "GFPGAN"
    else:
        request.restore_faces = choice in ("true", "yes", "y", "1")


def _size(request: GenerationRequest, value, all_values) -> None:
    request.width, request.height = parse_size(value)


def parse_size(value: str) -> tuple[int, int]:
    """``"512x768"`` -> (512, 768); ValueError otherwise."""
    width, _, height = str(value).lower().partition("x")
    return int(width.strip()), int(height.strip())


def _uni_pc_order(request: GenerationRequest, value, all_values) -> None:
    request.sampler_overrides = {**request.sampler_overrides, "uni_pc_order": min(value, request.steps - 1)}


def _check_samplers(values, request, env) -> None:
    for value in values:
        if vocabulary.find_sampler(value) is None:
            raise InvalidRequest(f"script_args: unknown sampler {value!r}", field="script_args")


def _check_schedules(values, request, env) -> None:
    for value in values:
        if vocabulary.find_schedule(value) is None:
            raise InvalidRequest(f"script_args: unknown schedule type {value!r}", field="script_args")


def _check_checkpoints(values, request, env) -> None:
    if env.catalog is None:
        raise InvalidRequest("script_args: no checkpoint list to check the axis against", field="script_args")
    for value in values:
        try:
            env.catalog.find_checkpoint(value)
        except NotFound:
            raise InvalidRequest(f"script_args: no checkpoint named {value!r}", field="script_args") from None


def _check_vaes(values, request, env) -> None:
    for value in values:
        if value.lower() in ("automatic", "auto", "none") or env.catalog is None:
            continue
        try:
            env.catalog.find_vae(value)
        except NotFound:
            raise InvalidRequest(f"script_args: no VAE named {value!r}", field="script_args") from None


def _check_hires_upscalers(values, request, env) -> None:
    names = set(env.upscalers.names()) if env.upscalers is not None else set()
    for value in values:
        if not value.startswith("Latent") and names and value not in names:
            raise InvalidRequest(f"script_args: no upscaler named {value!r}", field="script_args")


def _check_prompt_sr(values, request, env) -> None:
    if values and values[0] not in request.prompt and values[0] not in request.negative_prompt:
        raise InvalidRequest(f"script_args: Prompt S/R did not find {values[0]!r} in the prompt or negative prompt",
                             field="script_args")


def _check_sizes(values, request, env) -> None:
    for value in values:
        try:
            width, height = parse_size(value)
        except ValueError:
            raise InvalidRequest(f"script_args: Size value {value!r} is not WIDTHxHEIGHT", field="script_args") \
                from None
        if not (16 <= width <= 4096 and 16 <= height <= 4096):
            raise InvalidRequest(f"script_args: Size {value!r} is outside 16..4096", field="script_args")


def format_labelled(axis: "Axis", value) -> str:
    if isinstance(value, float):
        value = round(value, 8)
    return f"{axis.label}: {value}"


def format_bare(axis: "Axis", value) -> str:
    return str(round(value, 8) if isinstance(value, float) else value)


def format_joined(axis: "Axis", value) -> str:
    return ", ".join(value)


def format_nothing(axis: "Axis", value) -> str:
    return ""


PERMUTATIONS = "permutations"
MAX_PERMUTED = 6  # 720 orders


@dataclass(frozen=True)
class Axis:
    """One X/Y/Z axis: its A1111 label, value type, effect, legend format, cost and tab."""

    label: str
    kind: object  # int, float, str or PERMUTATIONS
    apply: Callable | None  # (request, value, all_values); None: not supported here
    format: Callable = format_labelled
    check: Callable | None = None  # (values, request, env) at submission
    cost: float = 0.0  # slow-to-change axes run in the outer loop
    tab: str | None = None  # "txt2img" or "img2img" only; None: both
    choices: Callable | None = None
    refused: str = ""  # why it cannot be honoured here

    def expand(self, items: list[str]) -> list:
        """The typed values of ``items`` (permutations for Prompt order); ValueError for a bad one."""
        from webui.scripts.axis_values import parse_numbers

        if self.kind in (int, float):
            return parse_numbers(items, self.kind)
        if self.kind == PERMUTATIONS:
            if len(items) > MAX_PERMUTED:
                raise ValueError(f"at most {MAX_PERMUTED} tokens to reorder ({len(items)} would make too many cells)")
            return [list(p) for p in permutations(items)]
        return [str(v) for v in items]


def _refused(label: str, why: str, kind=float, tab: str | None = None) -> Axis:
    return Axis(label, kind, None, tab=tab, refused=why)


_NO_REFINER = "the refiner is not supported by this server"
AXES: tuple[Axis, ...] = (
    Axis("Nothing", str, lambda r, v, a: None, format=format_nothing),
    Axis("Seed", int, _set("seed")),
    Axis("Var. seed", int, _set("subseed")),
    Axis("Var. strength", float, _set("subseed_strength")),
    Axis("Steps", int, _set("steps")),
    Axis("Hires steps", int, _set("hr_second_pass_steps"), tab="txt2img"),
    Axis("CFG Scale", float, _set("cfg_scale")),
    _refused("Image CFG Scale", "only instruct-pix2pix models use it; not supported by this server", tab="img2img"),
    Axis("Prompt S/R", str, _prompt_sr, format=format_bare, check=_check_prompt_sr),
    Axis("Prompt order", PERMUTATIONS, _prompt_order, format=format_joined),
    Axis("Sampler", str, _set("sampler_name"), format=format_bare, check=_check_samplers, tab="txt2img",
         choices=vocabulary.sampler_names),
    Axis("Hires sampler", str, _set("hr_sampler_name"), check=_check_samplers, tab="txt2img",
         choices=vocabulary.sampler_names),
    Axis("Sampler", str, _set("sampler_name"), format=format_bare, check=_check_samplers, tab="img2img",
         choices=vocabulary.sampler_names),
    Axis("Checkpoint name", str, _set("checkpoint"), format=format_bare, check=_check_checkpoints, cost=1.0),
    Axis("Negative Guidance minimum sigma", float, _set("s_min_uncond")),
    Axis("Sigma Churn", float, _set("s_churn")),
    Axis("Sigma min", float, _set("s_tmin")),
    Axis("Sigma max", float, _set("s_tmax")),
    Axis("Sigma noise", float, _set("s_noise")),
    Axis("Schedule type", str, _set("scheduler"), check=_check_schedules, choices=vocabulary.schedule_labels),
    Axis("Schedule min sigma", float, _sampler_option("sigma_min")),
    Axis("Schedule max sigma", float, _sampler_option("sigma_max")),
    Axis("Schedule rho", float, _sampler_option("rho")),
    Axis("Beta schedule alpha", float, _sampler_option("beta_dist_alpha")),
    Axis("Beta schedule beta", float, _sampler_option("beta_dist_beta")),
    Axis("Eta", float, _set("eta")),
    Axis("Clip skip", int, _set("clip_skip")),
    Axis("Denoising", float, _set("denoising_strength")),
    _refused("Initial noise multiplier", "initial_noise_multiplier is not supported by this server"),
    _refused("Extra noise", "img2img_extra_noise is not supported by this server"),
    Axis("Hires upscaler", str, _set("hr_upscaler"), check=_check_hires_upscalers, tab="txt2img"),
    _refused("Cond. Image Mask Weight", "inpainting_mask_weight is not supported by this server", tab="img2img"),
    Axis("VAE", str, _set("vae"), check=_check_vaes, cost=0.7),
    Axis("Styles", str, _styles),
    Axis("UniPC Order", int, _uni_pc_order, cost=0.5),
    Axis("Face restore", str, _face_restore, format=format_bare),
    _refused("Token merging ratio", "token merging is not supported by this server"),
    _refused("Token merging ratio high-res", "token merging is not supported by this server"),
    Axis("Always discard next-to-last sigma", str, _sampler_option("always_discard_next_to_last_sigma", True),
         choices=lambda: ["False", "True"]),
    Axis("SGM noise multiplier", str, _sampler_option("sgm_noise_multiplier", True),
         choices=lambda: ["False", "True"]),
    _refused("Refiner checkpoint", _NO_REFINER, kind=str),
    _refused("Refiner switch at", _NO_REFINER),
    Axis("RNG source", str, _set("randn_source"), choices=lambda: ["GPU", "CPU", "NV"]),
    _refused("FP8 mode", "fp8 weight storage is not supported by this server", kind=str),
    Axis("Size", str, _size, check=_check_sizes),
)


def axes_for(tab: str) -> list[Axis]:
    """The axes of A1111's txt2img or img2img dropdown, in its order (the positional ``*_type`` indices)."""
    return [axis for axis in AXES if axis.tab in (None, tab)]


def find_axis(tab: str, choice, where: str) -> Axis:
    """The axis a ``*_type`` value names: A1111's index into the tab's list, or the label; 422 otherwise."""
    axes = axes_for(tab)
    text = str(choice).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(axes):
            raise InvalidRequest(f"{where}: axis index {index} is out of range 0..{len(axes) - 1} for {tab}",
                                 field="script_args")
        axis = axes[index]
    else:
        axis = next((a for a in axes if a.label.lower() == text.lower()), None)
        if axis is None:
            raise InvalidRequest(f"{where}: no {tab} X/Y/Z axis named {text!r}", field="script_args")
    if axis.apply is None:
        raise InvalidRequest(f"{where}: the axis {axis.label!r} cannot be honoured: {axis.refused}",
                             field="script_args")
    return axis


def apply_axis(request: GenerationRequest, axis: Axis, value, values: list) -> None:
    """Change ``request`` (a private copy) for one axis value."""
    axis.apply(request, value, values)


def copy_request(request: GenerationRequest) -> GenerationRequest:
    """A copy whose lists and dicts may change without touching ``request``."""
    return dataclasses.replace(request, styles=list(request.styles), sampler_overrides=dict(request.sampler_overrides),
                               override_settings=dict(request.override_settings))
