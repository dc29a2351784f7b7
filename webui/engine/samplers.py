"""A1111's sampler and schedule names, mapped onto diffusers schedulers.

A table plus two pure functions: ``resolve_sampler`` turns what a user typed
(including legacy names such as "DPM++ 2M Karras") into a (sampler, schedule)
pair, and ``make_scheduler`` builds the diffusers scheduler for it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from webui.schemas import InvalidRequest


@dataclass(frozen=True)
class SamplerSpec:
    name: str  # A1111's name
    scheduler_class: str  # diffusers class name
    options: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler", {}, ("k_dpmpp_2m",)),
    SamplerSpec("DPM++ SDE", "DPMSolverSDEScheduler", {}, ("k_dpmpp_sde",)),
    SamplerSpec("DPM++ 2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"},
                ("k_dpmpp_2m_sde",)),
    SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler", {}, ("k_euler_a", "k_euler_ancestral")),
    SamplerSpec("Euler", "EulerDiscreteScheduler", {}, ("k_euler",)),
    SamplerSpec("LMS", "LMSDiscreteScheduler", {}, ("k_lms",)),
    SamplerSpec("Heun", "HeunDiscreteScheduler", {}, ("k_heun",)),
    SamplerSpec("DPM2", "KDPM2DiscreteScheduler", {}, ("k_dpm_2",)),
    SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler", {}, ("k_dpm_2_a",)),
    SamplerSpec("DDIM", "DDIMScheduler", {}, ()),
    SamplerSpec("DDPM", "DDPMScheduler", {}, ()),
    SamplerSpec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, ()),
    SamplerSpec("UniPC", "UniPCMultistepScheduler", {}, ()),
    SamplerSpec("LCM", "LCMScheduler", {}, ()),
)

# Schedule type -> scheduler config overrides (Automatic keeps the sampler's default).
SCHEDULES: dict[str, dict] = {
    "Automatic": {},
    "Uniform": {"timestep_spacing": "linspace"},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
}


def sampler_names() -> list[str]:
    return [s.name for s in SAMPLERS]


def schedule_names() -> list[str]:
    return list(SCHEDULES)


def resolve_sampler(name: str, schedule: str = "Automatic") -> tuple[SamplerSpec, str]:
    """Find the sampler for ``name``; a legacy suffix (" Karras", " Exponential") sets the schedule.

    >>> spec, schedule = resolve_sampler("DPM++ 2M Karras")
    >>> spec.name, schedule
    ('DPM++ 2M', 'Karras')
    """
    text = (name or "").strip()
    schedule = (schedule or "Automatic").strip()
    by_name = {s.name.lower(): s for s in SAMPLERS}
    by_name.update({alias.lower(): s for s in SAMPLERS for alias in s.aliases})
    spec = by_name.get(text.lower())
    if spec is None:
        for suffix in ("Karras", "Exponential", "Uniform"):
            if text.lower().endswith(" " + suffix.lower()):
                spec = by_name.get(text[: -len(suffix) - 1].strip().lower())
                if spec is not None:
                    schedule = suffix if schedule == "Automatic" else schedule
                break
    if spec is None:
        raise InvalidRequest(f"unknown sampler {name!r}; choose one of: {', '.join(sampler_names())}",
                             field="sampler_name")
    match = {k.lower(): k for k in SCHEDULES}.get(schedule.lower())
    if match is None:
        raise InvalidRequest(f"unknown schedule type {schedule!r}; choose one of: {', '.join(SCHEDULES)}",
                             field="scheduler")
    return spec, match


def make_scheduler(spec: SamplerSpec, schedule: str, base_config: dict):
    """A fresh diffusers scheduler for the model's training config; returns (scheduler, warnings)."""
    import diffusers

    cls = getattr(diffusers, spec.scheduler_class)
    accepted = set(inspect.signature(cls.__init__).parameters)
    warnings = []
    overrides = dict(spec.options)
    for key, value in SCHEDULES[schedule].items():
        if key in accepted:
            overrides[key] = value
        else:
            warnings.append(f"{spec.name} does not support the {schedule} schedule; using its default")
    config = {k: v for k, v in base_config.items() if k in accepted}
    config.update(overrides)
    return cls.from_config(config), warnings
