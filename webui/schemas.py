"""Typed requests, results and job records shared by the UI, the API, the queue and the engine.

Field names follow A1111's API (``/sdapi/v1/txt2img`` etc.) so the API layer is a
thin translation. Everything here turns into plain JSON-able data with
``to_dict()`` and back with ``from_dict()``, so a job can be stored in SQLite or
sent to a worker on another machine. Images travel as PIL images in memory and
as base64 PNG strings in serialised form.
"""
from __future__ import annotations

import base64
import dataclasses
import enum
import io
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

import pydantic
from PIL import Image
from pydantic import ConfigDict, Field, ValidationError

from webui.vocabulary import RANDN_SOURCES


# ---------------------------------------------------------------- image helpers
def image_to_base64(image: Image.Image, pnginfo=None) -> str:
    """PNG-encode an image as base64 text (no ``data:`` prefix).

    Without ``pnginfo`` the image's own text metadata (its infotext) travels with it.
    """
    if pnginfo is None:
        texts = {k: v for k, v in (image.info or {}).items() if isinstance(k, str) and isinstance(v, str)}
        if texts:
            from PIL import PngImagePlugin

            pnginfo = PngImagePlugin.PngInfo()
            for key, value in texts.items():
                pnginfo.add_text(key, value)
    buffer = io.BytesIO()
    # Save a private copy: Pillow keeps save options on the image object, which other threads may share.
    image.copy().save(buffer, format="PNG", pnginfo=pnginfo)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def image_from_base64(text: str) -> Image.Image:
    """Decode base64 image text, with or without a ``data:image/...;base64,`` prefix.

    Raises ``ValueError`` for anything that is not an image.
    """
    if not isinstance(text, str):
        raise ValueError("image must be a base64 string")
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    try:
        raw = base64.b64decode(text, validate=False)
        image = Image.open(io.BytesIO(raw))
        image.load()
    except Exception as exc:  # PIL raises many types for bad data
        raise ValueError(f"not a decodable image: {exc}") from None
    return image


def _encode(value: Any) -> Any:
    if isinstance(value, Image.Image):
        return {"__image__": image_to_base64(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__image__"}:
            return image_from_base64(value["__image__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


class Serialisable:
    """Mixin: ``to_dict`` / ``from_dict`` through plain JSON-able data."""

    def to_dict(self) -> dict:
        return _encode(self)

    @classmethod
    def from_dict(cls, data: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown field(s) for {cls.__name__}: {', '.join(sorted(unknown))}")
        return cls(**{k: _decode(v) for k, v in data.items()})


# ---------------------------------------------------------------- limits (declared once: API, UI, queue and engine)
MAX_STEPS = 150
MAX_BATCH_SIZE = 64
MAX_N_ITER = 100
MIN_SIDE = 16  # pixels: two latent cells
MAX_SIDE = 4096  # pixels, width or height of a generated image
MAX_PROMPT_CHARS = 20_000  # about 60 chunks of 75 tokens; the longest text any request field may hold
MAX_JOB_PIXELS = 64 * 1024 * 1024  # final width x height x batch size, hires fix included
MAX_EXTRAS_IMAGES = 64
MAX_EXTRAS_SIDE = 16384  # pixels, upscaling_resize_w / _h

# Field types carrying those limits. The request models below and the API bodies (webui/api/models.py) use them,
# so a value outside them is refused where the request is made (an API 422, a UI message), never in the worker.
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
HiresSteps = Annotated[int, Field(ge=0, le=MAX_STEPS)]  # 0 = the first pass's steps
BatchSize = Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE)]
BatchCount = Annotated[int, Field(ge=1, le=MAX_N_ITER)]
Side = Annotated[int, Field(ge=MIN_SIDE, le=MAX_SIDE)]
HiresSide = Annotated[int, Field(ge=0, le=MAX_SIDE)]  # 0 = from the other side and the aspect ratio
PromptText = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
Fraction = Annotated[float, Field(ge=0, le=1)]
CfgScale = Annotated[float, Field(ge=0, le=100)]
HiresScale = Annotated[float, Field(ge=1, le=8)]
ClipSkip = Annotated[int, Field(ge=1, le=12)]
ResizeMode = Annotated[int, Field(ge=0, le=3)]  # A1111's img2img resize modes (webui.vocabulary.RESIZE_MODES)
InpaintingFill = Annotated[int, Field(ge=0, le=3)]  # A1111's masked content (webui.vocabulary.MASKED_CONTENT)
MaskInvert = Annotated[int, Field(ge=0, le=1)]
MaskBlur = Annotated[int, Field(ge=0, le=512)]
InpaintPadding = Annotated[int, Field(ge=0, le=4096)]
ExtrasResizeMode = Annotated[int, Field(ge=0, le=1)]  # 0 scale by factor, 1 scale to width x height
UpscaleFactor = Annotated[float, Field(gt=0, le=16)]
ExtrasSide = Annotated[int, Field(ge=1, le=MAX_EXTRAS_SIDE)]
ExtrasImages = Annotated[list[Image.Image], Field(max_length=MAX_EXTRAS_IMAGES)]

# Non-finite numbers are refused (no stored job may hold a number JSON cannot carry), and so is any text longer
# than MAX_PROMPT_CHARS or not valid Unicode (pydantic refuses lone surrogates), and any unknown field name.
# The validators are built on first use, so importing this module stays cheap (worker processes start fast).
REQUEST_CONFIG = ConfigDict(arbitrary_types_allowed=True, allow_inf_nan=False, str_max_length=MAX_PROMPT_CHARS,
                            extra="forbid", defer_build=True)


class RequestModel(Serialisable):
    """Base of the request models: pydantic's refusals become InvalidRequest (HTTP 422 naming the field)."""

    @pydantic.model_validator(mode="wrap")
    @classmethod
    def _refuse_as_invalid_request(cls, values, handler):
        try:
            return handler(values)
        except ValidationError as exc:
            raise InvalidRequest.from_validation_error(exc) from None


def request_model(cls):
    """``cls`` (a RequestModel) as a pydantic dataclass validated whenever a request is made:
    ``cls(...)``, ``from_dict``, ``dataclasses.replace``."""
    return pydantic.dataclasses.dataclass(config=REQUEST_CONFIG)(cls)


# ---------------------------------------------------------------- requests
@request_model
class GenerationRequest(RequestModel):
    """txt2img, img2img and inpaint in one: an init image means img2img, a mask means inpaint."""

    prompt: PromptText = ""
    negative_prompt: PromptText = ""
    styles: list[str] = field(default_factory=list)
    seed: int = -1
    # Variation seed and seed resize (A1111's names; 0 = off), and this job's noise options
    # (None = the option's value: randn_source "GPU"|"CPU"|"NV", eta_noise_seed_delta).
    subseed: int = -1
    subseed_strength: Fraction = 0.0
    seed_resize_from_w: int = 0
    seed_resize_from_h: int = 0
    randn_source: Literal[RANDN_SOURCES] | None = None
    eta_noise_seed_delta: int | None = None
    sampler_name: str = "Euler a"
    scheduler: str = "Automatic"
    batch_size: BatchSize = 1
    n_iter: BatchCount = 1
    steps: Steps = 20
    cfg_scale: CfgScale = 7.0
    width: Side = 512
    height: Side = 512
    clip_skip: ClipSkip = 1
    restore_faces: bool = False
    face_restorer: str = "CodeFormer"
    codeformer_weight: Fraction = 0.5
    # Model choice for this job (A1111: override_settings.sd_model_checkpoint / sd_vae).
    checkpoint: str | None = None
    vae: str | None = None  # None = settings' choice; "Automatic", "None" or a file name
    # Hires fix (txt2img only), A1111's names.
    enable_hr: bool = False
    hr_scale: HiresScale = 2.0
    hr_upscaler: str = "Latent"
    hr_second_pass_steps: HiresSteps = 0
    hr_resize_x: HiresSide = 0
    hr_resize_y: HiresSide = 0
    # Second pass's own choices; None or "" = the first pass's (A1111's "Use same ...").
    hr_checkpoint: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: PromptText = ""
    hr_negative_prompt: PromptText = ""
    # img2img / inpaint, A1111's names and codes.
    init_image: Image.Image | None = None
    mask: Image.Image | None = None
    denoising_strength: Fraction = 0.75
    resize_mode: ResizeMode = 0  # 0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale
    mask_blur: MaskBlur = 4
    inpainting_fill: InpaintingFill = 1  # 0 fill, 1 original, 2 latent noise, 3 latent nothing
    inpaint_full_res: bool = False  # "Only masked"
    inpaint_full_res_padding: InpaintPadding = 32
    inpainting_mask_invert: MaskInvert = 0  # 0 inpaint masked, 1 inpaint not masked
    save_images: bool = True
    # A1111 options for this job only (saving options such as samples_format; see webui/saving.py).
    override_settings: dict = field(default_factory=dict)
    # Sampler settings, A1111's request fields (None: the option's value) and option overrides for this job
    # (A1111 option keys such as eta_ancestral, sigma_min, always_discard_next_to_last_sigma, cfg_rescale_phi).
    eta: float | None = None
    s_churn: float | None = None
    s_tmin: float | None = None
    s_tmax: float | None = None
    s_noise: float | None = None
    s_min_uncond: float | None = None
    sampler_overrides: dict = field(default_factory=dict)
    # Guidance add-ons (webui.addons): ours by name, {"dynamic_thresholding": {"enabled": True, ...}}, and
    # A1111's always-on scripts by title, {"Dynamic Thresholding (CFG Scale Fix)": {"args": [True, 7]}}.
    addons: dict = field(default_factory=dict)
    alwayson_scripts: dict = field(default_factory=dict)
    # A1111's selectable script (webui.scripts): its key and its named, validated values; "" = none.
    script_name: str = ""
    script_args: dict = field(default_factory=dict)
    do_not_save_grid: bool = False
    # A1111's per-job switches: seamless tiling (circular padding), extra-network tags left unapplied.
    tiling: bool = False
    disable_extra_networks: bool = False
    # Refiner (A1111): switch to this checkpoint after ``refiner_switch_at`` of the steps.
    refiner_checkpoint: str | None = None
    refiner_switch_at: float = 0.8
    # img2img extras, A1111's names: one init image per batch item (the first is ``init_image``),
    # the mask blurred separately across and down (None: ``mask_blur`` both ways), the noise scaled
    # by ``initial_noise_multiplier``, a mask kept soft when ``mask_round`` is false, and a
    # ``latent_mask`` for the sampler while ``mask`` is pasted back.
    extra_init_images: list[Image.Image] = field(default_factory=list)
    mask_blur_x: int | None = None
    mask_blur_y: int | None = None
    initial_noise_multiplier: float = 1.0
    mask_round: bool = True
    latent_mask: Image.Image | None = None
    # A1111's force_task_id: the client's name for this job, which /internal/progress answers to.
    task_id: str | None = None
    # txt2img hires fix from a given first-pass image (A1111's firstpass_image).
    firstpass_image: Image.Image | None = None

    def __post_init__(self):
        if self.mask is not None and self.init_image is None:
            raise InvalidRequest("a mask needs an init image", field="mask")
        width, height = final_size(self)
        if width * height * self.batch_size > MAX_JOB_PIXELS:
            raise InvalidRequest(f"{width}x{height} x batch of {self.batch_size} is over this server's limit of "
                                 f"{MAX_JOB_PIXELS} pixels per batch", field="batch_size")

    @property
    def mode(self) -> str:
        if self.init_image is None:
            return "txt2img"
        return "inpaint" if self.mask is not None else "img2img"


@request_model
class ExtrasRequest(RequestModel):
    """One or more images through upscaling and face restoration (A1111's Extras)."""

    images: ExtrasImages = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # original file names, for batch outputs
    resize_mode: ExtrasResizeMode = 0  # 0 scale by factor, 1 scale to width x height
    upscaling_resize: UpscaleFactor = 2.0
    upscaling_resize_w: ExtrasSide = 512
    upscaling_resize_h: ExtrasSide = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: Fraction = 0.0
    gfpgan_visibility: Fraction = 0.0
    codeformer_visibility: Fraction = 0.0
    codeformer_weight: Fraction = 0.0
    upscale_first: bool = True
    save_images: bool = True
    override_settings: dict = field(default_factory=dict)  # A1111 options for this job only


# A ControlNet preprocessor run on its own (``/controlnet/detect``, the UI's preview) is a job of its own kind
# when the preprocessor runs a network: only the queue's worker holds model weights.
DETECT_JOB_KIND = "detect"
DetectResolution = Annotated[int, Field(ge=-1, le=MAX_SIDE)]  # -1: the preprocessor's default
DetectThreshold = Annotated[float, Field(ge=-1, le=10_000)]  # -1: the preprocessor's default


@request_model
class DetectRequest(RequestModel):
    """Images through one ControlNet preprocessor, as sd-webui-controlnet's ``/controlnet/detect`` takes them."""

    module: Annotated[str, Field(max_length=200)] = "none"
    images: ExtrasImages = field(default_factory=list)
    processor_res: DetectResolution = -1
    threshold_a: DetectThreshold = -1
    threshold_b: DetectThreshold = -1


def final_size(request: "GenerationRequest") -> tuple[int, int]:
    """Width and height of the images a request makes, after hires fix."""
    width, height = request.width, request.height
    if request.enable_hr and request.init_image is None:
        if request.hr_resize_x or request.hr_resize_y:
            x, y = request.hr_resize_x, request.hr_resize_y
            return (x or round(width * y / max(1, height)), y or round(height * x / max(1, width)))
        return int(width * request.hr_scale), int(height * request.hr_scale)
    return width, height


def check_request_limits(request) -> None:
    """Validate a request again (InvalidRequest), for code that changed its fields after it was made.

    The queue calls it at submission and the engine before it runs a job: the same declared limits as the
    request model's own, so nothing that breaks storage or a listing is ever queued.
    """
    dataclasses.replace(request)


# ---------------------------------------------------------------- model actions (job kind "model")
# Checkpoint load, unload and reload run as queue jobs so only the worker touches weights
# (webui.models.actions applies them).
MODEL_JOB_KIND = "model"
MODEL_ACTIONS = ("load", "unload", "reload")


@dataclass
class ModelAction:
    """What to do with the live model: ``load`` a checkpoint (by title), ``unload`` it, or ``reload`` it from disk."""

    action: str
    checkpoint: str | None = None

    def __post_init__(self):
        if self.action not in MODEL_ACTIONS:
            raise InvalidRequest(f"model action must be one of {', '.join(MODEL_ACTIONS)}", field="action")
        if self.action == "load" and not self.checkpoint:
            raise InvalidRequest("loading a model needs a checkpoint name", field="checkpoint")

    def describe(self) -> str:
        """One line for queue listings: ``load checkpoint x.safetensors [abc]``."""
        return f"{self.action} checkpoint {self.checkpoint}" if self.checkpoint else f"{self.action} checkpoint"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelAction":
        return cls(action=data.get("action", ""), checkpoint=data.get("checkpoint"))


# ---------------------------------------------------------------- results
@dataclass
class GenerationResult(Serialisable):
    images: list[Image.Image] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    negative_prompts: list[str] = field(default_factory=list)
    saved_paths: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)  # first image's fields, A1111's `info` JSON
    memory_plan: str = ""  # where the weights lived and why (webui.models.memory_plan), for the log and the UI
    notes: list[str] = field(default_factory=list)  # what else the job should tell (torch.compile's state)


@dataclass
class ExtrasResult(Serialisable):
    images: list[Image.Image] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)  # what was done: A1111's "postprocessing" text
    source_infotexts: list[str] = field(default_factory=list)  # each source image's own infotext ("" if none)
    saved_paths: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class DetectResult(Serialisable):
    images: list[Image.Image] = field(default_factory=list)  # the control images, one per input image
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- progress and control
@dataclass
class Progress(Serialisable):
    """Where a running job is; ``preview`` is a small RGB image or None."""

    image_index: int = 0  # 0-based image of the job being made
    image_count: int = 1
    step: int = 0
    steps: int = 0
    started_at: float = field(default_factory=time.time)
    preview: Image.Image | None = None
    step_seconds: float | None = None  # measured time of one step (webui.jobs.step_clock); None: not yet known

    @property
    def fraction(self) -> float:
        if self.steps <= 0 or self.image_count <= 0:
            return 0.0
        done = self.image_index * self.steps + min(self.step, self.steps)
        return min(1.0, done / (self.image_count * self.steps))

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left: the steps to go times the measured step time (None until a step was measured)."""
        if self.step_seconds is None or self.steps <= 0 or self.image_count <= 0:
            return None
        done = self.image_index * self.steps + min(self.step, self.steps)
        return max(0, self.image_count * self.steps - done) * self.step_seconds


class JobControl(Protocol):
    """What the engine sees of the job it runs: report progress, ask whether to stop."""

    def report(self, progress: Progress) -> None: ...

    def interrupted(self) -> bool:
        """True once the user asked to stop the whole job."""

    def take_skip(self) -> bool:
        """True once (then reset) when the user asked to skip the current image."""

    def wants_preview(self, step: int) -> bool:
        """Whether the engine should decode a preview at this step."""


class NullControl:
    """A JobControl for direct calls: never stops, ignores progress."""

    def report(self, progress: Progress) -> None:
        pass

    def interrupted(self) -> bool:
        return False

    def take_skip(self) -> bool:
        return False

    def wants_preview(self, step: int) -> bool:
        return False


# ---------------------------------------------------------------- jobs
class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


JOB_KINDS = ("txt2img", "img2img", "extras")


# ---------------------------------------------------------------- errors
class WebUIError(Exception):
    """Base of the errors the engine raises on purpose; the message is for the user."""

    http_status = 500


class InvalidRequest(WebUIError):
    """The request cannot be run as given (bad field value, unknown sampler...)."""

    http_status = 422

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field

    @classmethod
    def from_validation_error(cls, error: ValidationError) -> "InvalidRequest":
        """The first refusal of a pydantic validation, as ``field: reason`` naming the field."""
        first = error.errors(include_url=False)[0]
        location = ".".join(str(part) for part in first["loc"])
        if not location:
            return cls(first["msg"])
        return cls(f"{location}: {first['msg']}", field=str(first["loc"][0]))


class NotFound(WebUIError):
    """A named checkpoint, LoRA, upscaler or job does not exist."""

    http_status = 404


class ModelLoadError(WebUIError):
    """A model file could not be loaded (corrupt, unsafe pickle, unknown family...)."""

    http_status = 422


class QueueFull(WebUIError):
    http_status = 429


class JobInterrupted(WebUIError):
    """Raised inside the engine when the user interrupted; carries what was finished."""

    http_status = 409

    def __init__(self, message: str = "interrupted", partial=None):
        super().__init__(message)
        self.partial = partial
