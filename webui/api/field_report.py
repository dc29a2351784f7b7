"""Honesty about A1111 request fields: the ones this server accepts but does not apply.

A1111 clients send every field of its request models. Each one is either mapped
onto the GenerationRequest (webui.api.convert), refused with a 422 naming it
where A1111 refuses it too (convert and webui.api.script_fields), or reported
under ``warnings`` in the response's ``info`` so the client can tell it was not
applied.
"""
from __future__ import annotations

from webui import vocabulary
from webui.api.models import GenerationBody, Img2ImgBody, Txt2ImgBody
from webui.options import DEFAULT_OPTIONS

# Options that hold for the whole server, not for one job: an override of one is named in the warnings.
SERVER_WIDE_OPTIONS = frozenset({
    "sd_checkpoints_limit", "show_progress_every_n_steps", "ESRGAN_tile", "ESRGAN_tile_overlap",
})
# override_settings keys a job honours: every option of the server's (the engine reads them through the
# job's JobOptions; convert.py maps a few onto request fields) but the server-wide ones.
HONOURED_OVERRIDES = frozenset(DEFAULT_OPTIONS) - SERVER_WIDE_OPTIONS


def ignored_field_warnings(body: GenerationBody) -> list[str]:
    """One warning per field the request sets that this server accepts but does not apply."""
    warnings = []

    def ignored(field: str, why: str = "not supported by this server") -> None:
        warnings.append(f"{field}: {why}; ignored")

    refiner = (body.refiner_checkpoint or "").strip()
    if body.refiner_switch_at is not None and (not refiner or refiner == "None"):
        ignored("refiner_switch_at", "no refiner_checkpoint was given")
    for key in sorted(set(body.override_settings) - HONOURED_OVERRIDES):
        why = ("a server-wide option that does not change per job" if key in SERVER_WIDE_OPTIONS
               else "not an option this server has")
        ignored(f"override_settings.{key}", why)
    if body.comments:
        ignored("comments")
    if body.script_args and not body.script_name:
        ignored("script_args", "no script_name was given")
    if isinstance(body, Txt2ImgBody):
        if body.firstpass_image and not body.enable_hr:
            ignored("firstpass_image", "used only with enable_hr (as A1111)")
        for name in ("firstphase_width", "firstphase_height"):
            if getattr(body, name):
                ignored(name, "a legacy field (A1111 ignores it too)")
    if isinstance(body, Img2ImgBody):
        if body.image_cfg_scale is not None:
            ignored("image_cfg_scale", "only instruct-pix2pix models use it; not supported by this server")
    return warnings
