"""Honesty about A1111 request fields: the ones this server refuses, and the ones it accepts but does not apply.

A1111 clients send every field of its request models. Each one is either mapped
onto the GenerationRequest (webui.api.convert), refused here with a 422 naming it
where A1111 refuses it too, or reported under ``warnings`` in the response's
``info`` so the client can tell it was not applied.
"""
from __future__ import annotations

from webui import vocabulary
from webui.api.models import GenerationBody, Img2ImgBody, Txt2ImgBody
from webui.saving import SAVING_OPTIONS
from webui.schemas import InvalidRequest, NotFound

# override_settings keys a job honours (convert.py maps them; saving and sampler options by their tables).
HONOURED_OVERRIDES = frozenset({
    "CLIP_stop_at_last_layers", "sd_model_checkpoint", "sd_vae", "randn_source", "eta_noise_seed_delta",
    "face_restoration_model", "code_former_weight",
}) | frozenset(SAVING_OPTIONS) | frozenset(vocabulary.OPTION_KEYS)


def check_refused_fields(body: GenerationBody, services) -> None:
    """Raise a 422 naming the field where A1111 refuses the request: an unknown script or refiner."""
    if body.script_name:
        # This server has no selectable scripts yet (X/Y/Z plot and the rest): A1111 answers 422 for
        # a script it does not have.
        raise InvalidRequest(f"script_name: no script named {body.script_name!r} on this server",
                             field="script_name")
    refiner = (body.refiner_checkpoint or "").strip()
    if refiner and refiner != "None":
        try:
            services.catalog.find_checkpoint(refiner)
        except NotFound:
            raise InvalidRequest(f"refiner_checkpoint: no checkpoint named {refiner!r}",
                                 field="refiner_checkpoint") from None


def ignored_field_warnings(body: GenerationBody) -> list[str]:
    """One warning per field the request sets that this server accepts but does not apply."""
    warnings = []

    def ignored(field: str, why: str = "not supported by this server") -> None:
        warnings.append(f"{field}: {why}; ignored")

    refiner = (body.refiner_checkpoint or "").strip()
    if refiner and refiner != "None":
        ignored("refiner_checkpoint", "the refiner switch is not supported by this server")
    if body.refiner_switch_at is not None:
        ignored("refiner_switch_at", "the refiner switch is not supported by this server")
    if body.tiling:
        ignored("tiling", "seamless tiling is not supported by this server")
    if body.do_not_save_grid:
        ignored("do_not_save_grid")
    if not body.override_settings_restore_afterwards:
        ignored("override_settings_restore_afterwards",
                "override_settings always apply to this job only; the options were not changed")
    for key in sorted(set(body.override_settings) - HONOURED_OVERRIDES):
        ignored(f"override_settings.{key}", "this option cannot be overridden per job here")
    if body.disable_extra_networks:
        ignored("disable_extra_networks")
    if body.comments:
        ignored("comments")
    if body.force_task_id:
        ignored("force_task_id", "task ids of A1111's /internal/progress are not supported")
    if body.script_args:
        ignored("script_args", "no script_name was given")
    if isinstance(body, Txt2ImgBody):
        if body.firstpass_image:
            ignored("firstpass_image")
        for name in ("firstphase_width", "firstphase_height"):
            if getattr(body, name):
                ignored(name, "a legacy field (A1111 ignores it too)")
    if isinstance(body, Img2ImgBody):
        if body.init_images and len(body.init_images) > 1:
            warnings.append(f"init_images: only the first of {len(body.init_images)} images is used")
        if body.mask_blur is None and body.mask_blur_x != body.mask_blur_y:
            warnings.append(f"mask_blur_x and mask_blur_y differ: both blurred by "
                            f"{max(body.mask_blur_x, body.mask_blur_y)}")
        if body.image_cfg_scale is not None:
            ignored("image_cfg_scale", "only instruct-pix2pix models use it; not supported by this server")
        if not body.mask_round:
            ignored("mask_round")
        if body.initial_noise_multiplier is not None and body.initial_noise_multiplier != 1.0:
            ignored("initial_noise_multiplier")
        if body.latent_mask:
            ignored("latent_mask")
    return warnings
