"""Request bodies of the A1111-compatible API, with A1111's field names and API defaults.

Unknown fields are accepted and ignored (A1111 clients send many), a ``null``
value means "the default" (A1111's fields are all optional), and a value of the
wrong type is a 422 naming the field.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from webui.api.script_models import ScriptArgs
from webui.schemas import (
    BatchCount, BatchSize, CfgScale, ExtrasResizeMode, ExtrasSide, Fraction, HiresScale, HiresSide, HiresSteps,
    InpaintingFill, InpaintPadding, MaskBlur, MaskInvert, PromptText, ResizeMode, Side, Steps, UpscaleFactor,
)


class ApiModel(BaseModel):
    # NaN and infinity are refused: no stored request or option may hold a number JSON cannot carry.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, protected_namespaces=(), allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data):
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class GenerationBody(ApiModel):
    """Fields txt2img and img2img share (A1111's StableDiffusionProcessing)."""

    prompt: PromptText = ""
    negative_prompt: PromptText = ""
    styles: list[str] = Field(default_factory=list)
    seed: int = -1
    subseed: int = -1
    subseed_strength: Fraction = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    sampler_index: str = "Euler"  # A1111's API default sampler when sampler_name is not given
    scheduler: str | None = None
    batch_size: BatchSize = 1
    n_iter: BatchCount = 1
    steps: Steps = 50
    cfg_scale: CfgScale = 7.0
    width: Side = 512
    height: Side = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: Fraction | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] = Field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    comments: dict | None = None
    script_name: str | None = None
    script_args: ScriptArgs = Field(default_factory=list)  # A1111's positional args, or ours by name
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict = Field(default_factory=dict)
    addons: dict = Field(default_factory=dict)  # ours: guidance add-ons by name (webui.addons)
    force_task_id: str | None = None
    infotext: str | None = None


class Txt2ImgBody(GenerationBody):
    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: HiresScale = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: HiresSteps = 0
    hr_resize_x: HiresSide = 0
    hr_resize_y: HiresSide = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: PromptText = ""
    hr_negative_prompt: PromptText = ""
    firstpass_image: str | None = None


class Img2ImgBody(GenerationBody):
    init_images: list[str] | None = None
    resize_mode: ResizeMode = 0
    denoising_strength: Fraction = 0.75
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur_x: MaskBlur = 4
    mask_blur_y: MaskBlur = 4
    mask_blur: MaskBlur | None = None
    mask_round: bool = True
    inpainting_fill: InpaintingFill = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: InpaintPadding = 0
    inpainting_mask_invert: MaskInvert = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool = False


class ExtrasBody(ApiModel):
    """A1111's ExtrasBaseRequest."""

    resize_mode: ExtrasResizeMode = 0
    show_extras_results: bool = True
    gfpgan_visibility: Fraction = 0.0
    codeformer_visibility: Fraction = 0.0
    codeformer_weight: Fraction = 0.0
    upscaling_resize: UpscaleFactor = 2.0
    upscaling_resize_w: ExtrasSide = 512
    upscaling_resize_h: ExtrasSide = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: Fraction = 0.0
    upscale_first: bool = False


class ExtrasSingleBody(ExtrasBody):
    image: str = ""


class FileData(ApiModel):
    data: str
    name: str = ""


class ExtrasBatchBody(ExtrasBody):
    imageList: list[FileData] = Field(default_factory=list)  # noqa: N815 - A1111's name


class PngInfoBody(ApiModel):
    image: str


class ReproduceBody(ApiModel):
    """``POST /api/v1/reproduce``: a PNG (base64, as A1111's image fields) whose infotext is run again."""

    image: str
    include_difference_image: bool = True
