"""A1111's vocabulary, in one place: the names, codes and defaults that engine, API and UI share.

Sampler and schedule tables (A1111 1.10's names, aliases and per-sampler options, and resolving what a client
sent), the sampler option keys, latent upscale modes, img2img resize modes, inpainting enums, upscaler names
and the version string. ``/sdapi/v1/samplers`` and ``/schedulers``, the UI dropdowns and the engine all read
these tables, so every name the API advertises is one the engine runs. Plain data (functions by name), so
anything can import it without torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

# What this program writes where A1111 writes its version (infotext "Version", the API's info "version").
VERSION = "webui-0.1"

# The noise sources of the option randn_source (A1111's "Random number generator source").
RANDN_SOURCES = ("GPU", "CPU", "NV")
# Live preview methods (A1111's option show_progress_type; its "Approx NN" is not offered).
PREVIEW_TYPES = ("Approx cheap", "TAESD", "Full")
# Where a job's weights live on a GPU (option memory_offload). "Automatic" lets the memory planner choose per job;
# the others force one of diffusers' offload modes (A1111's --medvram is "Model offload", --lowvram "Sequential").
MEMORY_OFFLOAD_CHOICES = {"Automatic": None, "Keep on device": "none", "Model offload": "model",
                          "Group offload": "group", "Sequential offload": "sequential"}

# img2img and inpaint choices; A1111's API sends the index into each tuple.
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")  # inpainting_fill
INPAINT_AREAS = ("Whole picture", "Only masked")  # inpaint_full_res
MASK_MODES = ("Inpaint masked", "Inpaint not masked")  # inpainting_mask_invert

# Hires fix's latent upscalers: A1111's name -> (torch interpolate mode, antialias).
LATENT_UPSCALE_MODES = {
    "Latent": ("bilinear", False), "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False), "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False), "Latent (nearest-exact)": ("nearest-exact", False),
}
# Upscalers that need no model file, as A1111 names them.
BUILTIN_UPSCALERS = ("None", "Lanczos", "Nearest")
# A1111's upscaler names -> the model files (stems, first present wins) that stand for them here.
# "ESRGAN_4x" (the original ESRGAN) and "R-ESRGAN General 4xV3" fall back on the nearest model we
# ship (RealESRGAN_x4plus, the Compact realesr-animevideov3); /sdapi/v1/upscalers names the file used.
A1111_UPSCALER_NAMES = {
    "ESRGAN_4x": ("ESRGAN_4x", "RealESRGAN_x4plus"),
    "R-ESRGAN 4x+": ("RealESRGAN_x4plus",),
    "R-ESRGAN 4x+ Anime6B": ("RealESRGAN_x4plus_anime_6B",),
    "R-ESRGAN 2x+": ("RealESRGAN_x2plus",),
    "R-ESRGAN General 4xV3": ("realesr-general-x4v3", "realesr-animevideov3"),
    "R-ESRGAN General WDN 4xV3": ("realesr-general-wdn-x4v3",),
    "R-ESRGAN AnimeVideo": ("realesr-animevideov3",),
}

# Samplers and schedule types.
FALLBACK_SAMPLER = "DPM++ 2M"


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule type as ``/sdapi/v1/schedulers`` lists it; ``function`` is its name in ``schedules``."""

    name: str  # A1111's API name
    label: str  # A1111's label (infotext and UI)
    function: str | None
    default_rho: float = -1.0
    need_inner_model: bool = False
    aliases: tuple[str, ...] = ()


SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec("automatic", "Automatic", None),
    ScheduleSpec("uniform", "Uniform", "uniform", need_inner_model=True),
    ScheduleSpec("karras", "Karras", "karras", default_rho=7.0),
    ScheduleSpec("exponential", "Exponential", "exponential"),
    ScheduleSpec("polyexponential", "Polyexponential", "polyexponential", default_rho=1.0),
    ScheduleSpec("sgm_uniform", "SGM Uniform", "sgm_uniform", need_inner_model=True, aliases=("SGMUniform",)),
    ScheduleSpec("kl_optimal", "KL Optimal", "kl_optimal"),
    ScheduleSpec("align_your_steps", "Align Your Steps", "align_your_steps"),
    ScheduleSpec("simple", "Simple", "simple", need_inner_model=True),
    ScheduleSpec("normal", "Normal", "normal", need_inner_model=True),
    ScheduleSpec("ddim", "DDIM", "ddim", need_inner_model=True),
    ScheduleSpec("beta", "Beta", "beta", need_inner_model=True),
)


def find_schedule(text: str | None) -> ScheduleSpec | None:
    """The schedule a label, API name or alias names (case-insensitive); None if unknown."""
    key = (text or "").strip().lower()
    for spec in SCHEDULES:
        if key in (spec.name, spec.label.lower(), *(a.lower() for a in spec.aliases)):
            return spec
    return None


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler: A1111's name and aliases, the algorithm, and A1111's options for it."""

    name: str
    function: str  # in ksamplers (kind "sigmas", "lcm") or timesteps (kind "timesteps")
    aliases: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)
    kind: str = "sigmas"  # "sigmas" (k-diffusion), "timesteps" (DDIM family), "lcm"

    @property
    def default_schedule(self) -> str | None:
        """A1111's schedule for "Automatic" (API name), or None for the model's uniform sigmas."""
        return self.options.get("scheduler")

    @property
    def second_order(self) -> bool:
        return bool(self.options.get("second_order"))


SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec("DPM++ 2M", "dpmpp_2m", ("k_dpmpp_2m",), {"scheduler": "karras"}),
    SamplerSpec("DPM++ SDE", "dpmpp_sde", ("k_dpmpp_sde",),
                {"scheduler": "karras", "second_order": True, "brownian_noise": True}),
    SamplerSpec("DPM++ 2M SDE", "dpmpp_2m_sde", ("k_dpmpp_2m_sde",),
                {"scheduler": "exponential", "brownian_noise": True}),
    SamplerSpec("DPM++ 2M SDE Heun", "dpmpp_2m_sde", ("k_dpmpp_2m_sde_heun",),
                {"scheduler": "exponential", "brownian_noise": True, "solver_type": "heun"}),
    SamplerSpec("DPM++ 2S a", "dpmpp_2s_ancestral", ("k_dpmpp_2s_a",),
                {"scheduler": "karras", "uses_ensd": True, "second_order": True}),
    SamplerSpec("DPM++ 3M SDE", "dpmpp_3m_sde", ("k_dpmpp_3m_sde",),
                {"scheduler": "exponential", "discard_next_to_last_sigma": True, "brownian_noise": True}),
    SamplerSpec("Euler a", "euler_ancestral", ("k_euler_a", "k_euler_ancestral"), {"uses_ensd": True}),
    SamplerSpec("Euler", "euler", ("k_euler",), {}),
    SamplerSpec("LMS", "lms", ("k_lms",), {}),
    SamplerSpec("Heun", "heun", ("k_heun",), {"second_order": True}),
    SamplerSpec("DPM2", "dpm_2", ("k_dpm_2",),
                {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True}),
    SamplerSpec("DPM2 a", "dpm_2_ancestral", ("k_dpm_2_a",),
                {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True,
                 "second_order": True}),
    SamplerSpec("DPM fast", "dpm_fast", ("k_dpm_fast",), {"uses_ensd": True}),
    SamplerSpec("DPM adaptive", "dpm_adaptive", ("k_dpm_ad",), {"uses_ensd": True}),
    SamplerSpec("Restart", "restart", ("restart",), {"scheduler": "karras", "second_order": True}),
    SamplerSpec("DDIM", "ddim", ("ddim",), {}, kind="timesteps"),
    SamplerSpec("DDIM CFG++", "ddim", ("ddim_cfgpp",), {"cfgpp": True}, kind="timesteps"),
    SamplerSpec("PLMS", "plms", ("plms",), {}, kind="timesteps"),
    SamplerSpec("UniPC", "unipc", ("unipc",), {}, kind="timesteps"),
    SamplerSpec("LCM", "lcm", ("k_lcm",), {}, kind="lcm"),
    # Not in A1111 1.10: ancestral DDPM (DDIM with eta 1) on the same timesteps.
    SamplerSpec("DDPM", "ddim", ("ddpm",), {"eta": 1.0}, kind="timesteps"),
)

# Options whose values select these per-sampler behaviours (A1111's 'sampler_extra_params').
CHURN_PARAMS = {"Euler", "Heun", "DPM2"}  # s_churn, s_tmin, s_tmax, s_noise
NOISE_PARAMS = {"DPM fast", "DPM2 a", "DPM++ 2S a", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun",
                "DPM++ 3M SDE", "Restart"}  # s_noise only
ETA_SAMPLERS = {"Euler a", "DPM2 a", "DPM++ 2S a", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun",
                "DPM++ 3M SDE", "DPM fast", "DPM adaptive"}


def sampler_names() -> list[str]:
    return [s.name for s in SAMPLERS]


def schedule_labels() -> list[str]:
    return [s.label for s in SCHEDULES]


def find_sampler(name: str | None) -> SamplerSpec | None:
    """The sampler a name or alias names (case-insensitive), or None."""
    key = (name or "").strip().lower()
    for spec in SAMPLERS:
        if key == spec.name.lower() or key in (a.lower() for a in spec.aliases):
            return spec
    return None


def resolve(sampler_name: str | None, schedule: str | None) -> tuple[SamplerSpec, ScheduleSpec, list[str]]:
    """(sampler, schedule, warnings) for what a client sent, falling back as A1111 does.

    A legacy suffix ("DPM++ 2M Karras") sets the schedule; an unknown sampler becomes
    DPM++ 2M and an unknown schedule Automatic, each with a warning.

    >>> spec, sched, warnings = resolve("k_dpmpp_2m_ka", "karras")
    >>> spec.name, sched.label, warnings[0].startswith("unknown sampler")
    ('DPM++ 2M', 'Karras', True)
    >>> spec, sched, warnings = resolve("DPM++ 2M Karras", "Automatic")
    >>> spec.name, sched.label, warnings
    ('DPM++ 2M', 'Karras', [])
    """
    warnings = []
    text = (sampler_name or "").strip() or FALLBACK_SAMPLER
    found = find_schedule(schedule) if (schedule or "").strip() else SCHEDULES[0]
    if found is None:
        warnings.append(f"unknown schedule type {schedule!r}; using Automatic")
        found = SCHEDULES[0]
    spec = find_sampler(text)
    if spec is None:
        for candidate in SCHEDULES[1:]:
            for option in (candidate.label, candidate.name, *candidate.aliases):
                if text.lower().endswith(" " + option.lower()):
                    spec = find_sampler(text[: -len(option) - 1])
                    if spec is not None and found.name == "automatic":
                        found = candidate
                    break
            if spec is not None:
                break
    if spec is None:
        warnings.append(f"unknown sampler {sampler_name!r}; using {FALLBACK_SAMPLER}")
        spec = find_sampler(FALLBACK_SAMPLER)
    return spec, found, warnings


@dataclass
class SamplerSettings:
    """A1111's sampler options (same keys as ``/sdapi/v1/options``), resolved for one job."""

    eta: float | None = None  # request field; None = eta_ancestral / eta_ddim
    eta_ancestral: float = 1.0
    eta_ddim: float = 0.0
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = 0.0  # 0 = infinity
    s_noise: float = 1.0
    s_min_uncond: float = 0.0
    sigma_min: float = 0.0  # 0 = the model's
    sigma_max: float = 0.0
    rho: float = 0.0  # 0 = the schedule's default
    always_discard_next_to_last_sigma: bool = False
    sgm_noise_multiplier: bool = False
    beta_dist_alpha: float = 0.6
    beta_dist_beta: float = 0.6
    uni_pc_variant: str = "bh1"
    uni_pc_skip_type: str = "time_uniform"
    uni_pc_order: int = 3
    uni_pc_lower_order_final: bool = True
    img2img_fix_steps: bool = False
    cfg_rescale_phi: float = 0.0

    @classmethod
    def from_mapping(cls, values: dict) -> "SamplerSettings":
        """Settings from options/override_settings; unknown keys are ignored, a bad value raises ValueError naming it."""
        out = cls()
        for f in fields(cls):
            value = values.get(f.name)
            if value is None:
                continue
            default = getattr(out, f.name)
            kind = float if default is None else type(default)
            if kind is bool and not isinstance(value, bool):
                raise ValueError(f"{f.name} must be true or false, not {value!r}")
            if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{f.name} must be a number, not {value!r}")
            if kind is str and not isinstance(value, str):
                raise ValueError(f"{f.name} must be a string, not {value!r}")
            setattr(out, f.name, kind(value))
        return out


# Option keys (A1111's) that change sampling; override_settings may set them per job.
OPTION_KEYS = frozenset(f.name for f in fields(SamplerSettings) if f.name != "eta")
OPTION_DEFAULTS = {f.name: f.default for f in fields(SamplerSettings) if f.name != "eta"}
