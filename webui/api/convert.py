"""Translation between the A1111 API's JSON and the typed requests and results in webui.schemas."""
from __future__ import annotations

import base64
import binascii
import datetime
import html
import io
import json
import warnings

from PIL import Image
from pydantic import ValidationError

from webui import vocabulary
from webui.api.controlnet import normalise_controlnet
from webui.api.errors import OptionForbidden, PayloadTooLarge
from webui.addons import addons_from_infotext, resolve_addons
from webui.api.models import ExtrasBody, GenerationBody, Img2ImgBody, Txt2ImgBody
from webui.images import encode_image_base64, read_infotext
from webui.infotext import infotext_to_request_fields, parse_infotext
from webui.saving import OUTDIR_OPTIONS, SAVING_OPTIONS, effective_options
from webui.schemas import ExtrasRequest, ExtrasResult, GenerationRequest, GenerationResult, InvalidRequest, NotFound


# Keys of the parsed infotext that A1111 keeps out of ``extra_generation_params``.
_BASIC_INFOTEXT_KEYS = frozenset({
    "Prompt", "Negative prompt", "Steps", "Sampler", "CFG scale", "Seed", "Size-1", "Size-2",
    "Model hash", "Model", "VAE hash", "VAE", "Clip skip", "Version", "Face restoration", "Batch size",
    "Batch pos", "Schedule type", "Denoising strength",
})


# ---------------------------------------------------------------- images in
def decode_image(text, field: str, max_pixels: int) -> Image.Image:
    """Decode a base64 image (with or without a ``data:`` prefix), refusing ones over ``max_pixels``.

    Bad data raises InvalidRequest (422) naming ``field``; an image too large
    raises PayloadTooLarge (413) before its pixels are decoded.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest(f"{field} is empty: send a base64-encoded image", field=field)
    text = text.strip()
    if text.startswith(("http://", "https://")):
        raise InvalidRequest(f"{field}: image URLs are not fetched; send the image as base64", field=field)
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if ";base64" not in header:
            raise InvalidRequest(f"{field}: only base64 data URLs are accepted", field=field)
    try:
        raw = base64.b64decode("".join(text.split()), validate=False)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{field} is not valid base64: {exc}", field=field) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge(f"{field} is too large (over {max_pixels} pixels)", field=field) from None
    except Exception as exc:  # PIL raises many types for data that is not an image
        raise InvalidRequest(f"{field} is not a decodable image ({type(exc).__name__})", field=field) from None
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(f"{field} is {width}x{height}, over the limit of {max_pixels} pixels", field=field)
    try:
        image.load()
    except Exception as exc:
        raise InvalidRequest(f"{field} is a damaged image ({type(exc).__name__}: {exc})", field=field) from None
    return image


def check_output_size(width: int, height: int, max_pixels: int, field: str = "width") -> None:
    """Refuse to make images larger than the server's pixel limit."""
    if width * height > max_pixels:
        raise InvalidRequest(f"{width}x{height} is over the limit of {max_pixels} pixels per image", field=field)


# ---------------------------------------------------------------- requests
def _override(body: GenerationBody, options, key: str, default):
    if key in body.override_settings:
        return body.override_settings[key]
    return options.get(key, default) if options is not None else default


def check_api_option_changes(changes: dict, services, field_prefix: str = "") -> None:
    """Refuse (403, naming the option) API changes to the outdir_* folders unless the server allows them.

    Sending an outdir option with its current value is not a change (clients post
    back the whole options dict), so that passes.
    """
    if getattr(services.settings, "allow_api_outdir", False):
        return
    current = services.options.as_dict() if services.options is not None else SAVING_OPTIONS
    for key in sorted(OUTDIR_OPTIONS & set(changes)):
        if changes[key] != current.get(key):
            raise OptionForbidden(f"{key} cannot be changed over the API on this server "
                                  "(start it with --allow-api-outdir to allow it)", field=field_prefix + key)


# Options a request maps onto its own fields (the checkpoint is resolved through the catalog).
_OPTIONS_AS_FIELDS = frozenset({"sd_model_checkpoint"})


def option_overrides(body: GenerationBody, services) -> dict:
    """The server options a request's ``override_settings`` sets for its job, checked (422/403 naming the key).

    Keys the server has no option for are left out (``field_report`` warns about them).
    """
    known = services.options.as_dict() if services.options is not None else dict(SAVING_OPTIONS)
    wanted = {k: v for k, v in body.override_settings.items() if k in known and k not in _OPTIONS_AS_FIELDS}
    if not wanted:
        return {}
    check_api_option_changes(wanted, services, "override_settings.")
    try:
        return type(services.options)(defaults=known).update(wanted) if services.options is not None else wanted
    except InvalidRequest as exc:
        raise InvalidRequest(str(exc), field=f"override_settings.{exc.field}") from None


def resolve_checkpoint(catalog, name: str) -> str:
    """The catalog title for a client's checkpoint name; rescans once before giving up (as A1111)."""
    try:
        return catalog.find_checkpoint(name).title
    except NotFound:
        catalog.refresh_checkpoints()
        return catalog.find_checkpoint(name).title


# Request fields A1111's ``infotext`` body field may fill (GenerationRequest name -> body name).
_INFOTEXT_BODY_FIELDS = ("prompt", "negative_prompt", "steps", "sampler_name", "scheduler", "cfg_scale", "seed",
                         "width", "height", "batch_size", "denoising_strength", "restore_faces", "enable_hr",
                         "hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y",
                         "mask_blur", "subseed", "subseed_strength", "seed_resize_from_w", "seed_resize_from_h")
# Request fields the infotext fills that A1111 keeps as options (request field -> option key).
_INFOTEXT_OPTIONS = {"clip_skip": "CLIP_stop_at_last_layers", "randn_source": "randn_source",
                     "eta_noise_seed_delta": "eta_noise_seed_delta"}


def apply_infotext(body: GenerationBody) -> GenerationBody:
    """A1111's ``infotext`` field: its parameters fill the fields the client did not send.

    Clip skip goes to ``override_settings``; the checkpoint is not switched by it.
    """
    if not body.infotext:
        return body
    parsed = parse_infotext(body.infotext)
    fields = infotext_to_request_fields(parsed)
    sent = body.model_fields_set
    update = {name: fields[name] for name in _INFOTEXT_BODY_FIELDS
              if name in fields and name not in sent and name in type(body).model_fields}
    if not {"addons", "alwayson_scripts"} & sent and addons_from_infotext(parsed):
        update["addons"] = addons_from_infotext(parsed)
    options = {key: fields[name] for name, key in _INFOTEXT_OPTIONS.items()
               if name in fields and key not in body.override_settings}
    if options:
        update["override_settings"] = {**body.override_settings, **options}
    try:
        return type(body).model_validate({**body.model_dump(exclude_unset=True), **update})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first.get("loc", ())) or "infotext"
        raise InvalidRequest(f"infotext gives a bad {name}: {first.get('msg', '')}", field="infotext") from None


def _common_fields(body: GenerationBody, services) -> dict:
    options = services.options
    clip_skip = _override(body, options, "CLIP_stop_at_last_layers", 1)
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, (int, float)) or int(clip_skip) < 1:
        raise InvalidRequest("CLIP_stop_at_last_layers must be a whole number >= 1",
                             field="override_settings.CLIP_stop_at_last_layers")
    checkpoint = body.override_settings.get("sd_model_checkpoint")
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise InvalidRequest("sd_model_checkpoint must be a string", field="override_settings.sd_model_checkpoint")
    vae = body.override_settings.get("sd_vae")
    if vae is not None and not isinstance(vae, str):
        raise InvalidRequest("sd_vae must be a string", field="override_settings.sd_vae")
    randn_source = body.override_settings.get("randn_source")
    if randn_source is not None and not isinstance(randn_source, str):
        raise InvalidRequest("randn_source must be GPU, CPU or NV", field="override_settings.randn_source")
    ensd = body.override_settings.get("eta_noise_seed_delta")
    if ensd is not None and (isinstance(ensd, bool) or not isinstance(ensd, (int, float))):
        raise InvalidRequest("eta_noise_seed_delta must be a whole number",
                             field="override_settings.eta_noise_seed_delta")
    sampler_overrides = {k: v for k, v in body.override_settings.items() if k in vocabulary.OPTION_KEYS}
    try:
        vocabulary.SamplerSettings.from_mapping(sampler_overrides)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field=f"override_settings.{str(exc).split()[0]}") from None
    max_pixels = services.settings.max_image_pixels
    check_output_size(body.width, body.height, max_pixels)
    resolve_addons(body.addons, body.alwayson_scripts)  # bad add-on values fail at submission (422)
    return dict(
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        styles=list(body.styles),
        seed=body.seed,
        subseed=body.subseed,
        subseed_strength=float(body.subseed_strength),
        seed_resize_from_w=max(body.seed_resize_from_w, 0),
        seed_resize_from_h=max(body.seed_resize_from_h, 0),
        randn_source=randn_source,  # None: the server's option
        eta_noise_seed_delta=None if ensd is None else int(ensd),
        sampler_name=body.sampler_name or body.sampler_index or "Euler",
        scheduler=body.scheduler or "Automatic",
        batch_size=body.batch_size,
        n_iter=body.n_iter,
        steps=body.steps,
        cfg_scale=float(body.cfg_scale),
        width=body.width,
        height=body.height,
        clip_skip=int(clip_skip),
        restore_faces=bool(body.restore_faces),
        face_restorer=str(_override(body, options, "face_restoration_model", "CodeFormer")),
        codeformer_weight=float(_override(body, options, "code_former_weight", 0.5)),
        checkpoint=resolve_checkpoint(services.catalog, checkpoint) if checkpoint else None,
        vae=vae or None,
        save_images=bool(body.save_images) and not body.do_not_save_samples,
        do_not_save_grid=bool(body.do_not_save_grid),
        override_settings=option_overrides(body, services),
        eta=body.eta, s_churn=body.s_churn, s_tmin=body.s_tmin, s_tmax=body.s_tmax, s_noise=body.s_noise,
        s_min_uncond=body.s_min_uncond,
        sampler_overrides=sampler_overrides,
        addons=dict(body.addons),
        alwayson_scripts=normalise_controlnet(dict(body.alwayson_scripts), services),
        tiling=bool(body.tiling),
        task_id=body.force_task_id or None,
        **_refiner_fields(body, services),
        disable_extra_networks=bool(body.disable_extra_networks),
    )


def _refiner_fields(body: GenerationBody, services) -> dict:
    """A1111's refiner: its checkpoint title and switch point (0.8, A1111's UI default, when not sent)."""
    name = (body.refiner_checkpoint or "").strip()
    if not name or name == "None":
        return {}
    at = 0.8 if body.refiner_switch_at is None else float(body.refiner_switch_at)
    if not 0.0 <= at <= 1.0:
        raise InvalidRequest("refiner_switch_at must be a number from 0 to 1", field="refiner_switch_at")
    try:
        title = resolve_checkpoint(services.catalog, name)
    except NotFound:
        raise InvalidRequest(f"refiner_checkpoint: no checkpoint named {name!r}", field="refiner_checkpoint") from None
    return {"refiner_checkpoint": title, "refiner_switch_at": at}


def txt2img_request(body: Txt2ImgBody, services) -> GenerationRequest:
    """A GenerationRequest from an A1111 txt2img body (override_settings applied for this job only)."""
    body = apply_infotext(body)
    fields = _common_fields(body, services)
    if body.enable_hr:
        if body.hr_resize_x or body.hr_resize_y:
            target_w = body.hr_resize_x or round(body.width * body.hr_resize_y / body.height)
            target_h = body.hr_resize_y or round(body.height * body.hr_resize_x / body.width)
        else:
            target_w, target_h = round(body.width * body.hr_scale), round(body.height * body.hr_scale)
        check_output_size(target_w, target_h, services.settings.max_image_pixels, field="hr_scale")
    fields.update(
        enable_hr=body.enable_hr,
        hr_scale=float(body.hr_scale),
        hr_upscaler=body.hr_upscaler or "Latent",
        hr_second_pass_steps=body.hr_second_pass_steps,
        hr_resize_x=body.hr_resize_x,
        hr_resize_y=body.hr_resize_y,
        hr_checkpoint=_hires_checkpoint(body, services),
        hr_sampler_name=_hires_choice(body.hr_sampler_name, "Use same sampler", "hr_sampler_name"),
        hr_scheduler=_hires_choice(body.hr_scheduler, "Use same scheduler", "hr_scheduler"),
        hr_prompt=body.hr_prompt,
        hr_negative_prompt=body.hr_negative_prompt,
        firstpass_image=(decode_image(body.firstpass_image, "firstpass_image", services.settings.max_image_pixels)
                         if body.firstpass_image and body.enable_hr else None),
        denoising_strength=0.75 if body.denoising_strength is None else float(body.denoising_strength),
    )
    return GenerationRequest(**fields)


def _hires_choice(value: str | None, same: str, field: str) -> str | None:
    """A hires sampler or schedule type name; None for the first pass's; unknown -> 422 naming the field."""
    if value in (None, "", same):
        return None
    sampler, schedule = (value, None) if field == "hr_sampler_name" else (None, value)
    _, _, unknown = vocabulary.resolve(sampler or "Euler", schedule)
    if unknown:
        raise InvalidRequest(f"{field}: {unknown[0]}", field=field)
    return value


def _hires_checkpoint(body: Txt2ImgBody, services) -> str | None:
    """The hires pass's checkpoint title; None for "Use same checkpoint"; unknown -> 422 (as A1111)."""
    name = (body.hr_checkpoint_name or "").strip()
    if not name or name == "Use same checkpoint":
        return None
    try:
        return resolve_checkpoint(services.catalog, name)
    except NotFound:
        raise InvalidRequest(f"hr_checkpoint_name: no checkpoint named {name!r}", field="hr_checkpoint_name") from None


def img2img_request(body: Img2ImgBody, services) -> GenerationRequest:
    """A GenerationRequest from an A1111 img2img body: one init image per batch item, or one for all."""
    body = apply_infotext(body)
    if not body.init_images:
        raise InvalidRequest("init_images is required: a list with one base64 image", field="init_images")
    if len(body.init_images) > body.batch_size:
        raise InvalidRequest(f"{len(body.init_images)} init images for a batch size of {body.batch_size}: "
                             "send at most batch_size images (one per image of a batch)", field="init_images")
    max_pixels = services.settings.max_image_pixels
    inits = [decode_image(text, "init_images", max_pixels) for text in body.init_images]
    mask = decode_image(body.mask, "mask", max_pixels) if body.mask else None
    latent_mask = decode_image(body.latent_mask, "latent_mask", max_pixels) if body.latent_mask else None
    noise_multiplier = body.initial_noise_multiplier
    if noise_multiplier is None:
        noise_multiplier = _override(body, services.options, "initial_noise_multiplier", 1.0)
    fields = _common_fields(body, services)
    fields.update(
        init_image=inits[0],
        extra_init_images=inits[1:],
        mask=mask,
        latent_mask=latent_mask,
        mask_round=bool(body.mask_round),
        initial_noise_multiplier=float(noise_multiplier),
        denoising_strength=float(body.denoising_strength),
        resize_mode=body.resize_mode,
        mask_blur=body.mask_blur if body.mask_blur is not None else max(body.mask_blur_x, body.mask_blur_y),
        mask_blur_x=body.mask_blur if body.mask_blur is not None else body.mask_blur_x,
        mask_blur_y=body.mask_blur if body.mask_blur is not None else body.mask_blur_y,
        inpainting_fill=body.inpainting_fill,
        inpaint_full_res=bool(body.inpaint_full_res),
        inpaint_full_res_padding=body.inpaint_full_res_padding,
        inpainting_mask_invert=body.inpainting_mask_invert,
    )
    return GenerationRequest(**fields)


def extras_request(body: ExtrasBody, images: list[Image.Image], names: list[str]) -> ExtrasRequest:
    """An ExtrasRequest from an A1111 extras body; API results are not saved (as A1111)."""
    return ExtrasRequest(
        images=images,
        names=names,
        resize_mode=body.resize_mode,
        upscaling_resize=float(body.upscaling_resize),
        upscaling_resize_w=body.upscaling_resize_w,
        upscaling_resize_h=body.upscaling_resize_h,
        upscaling_crop=body.upscaling_crop,
        upscaler_1=body.upscaler_1,
        upscaler_2=body.upscaler_2,
        extras_upscaler_2_visibility=float(body.extras_upscaler_2_visibility),
        gfpgan_visibility=float(body.gfpgan_visibility),
        codeformer_visibility=float(body.codeformer_visibility),
        codeformer_weight=float(body.codeformer_weight),
        upscale_first=body.upscale_first,
        save_images=False,
    )


# ---------------------------------------------------------------- results out
def encode_images(images, infotexts, options=None, overrides=None) -> list[str]:
    """Base64 images, each carrying its infotext (or the one the image already holds).

    As A1111, the format is the ``samples_format`` option (png, jpg or webp; the
    job's ``override_settings`` first), with ``jpeg_quality`` and ``webp_lossless``.
    """
    opts = effective_options(options, overrides)
    fmt = str(opts["samples_format"]).lower()
    out = []
    for index, image in enumerate(images):
        text = infotexts[index] if index < len(infotexts) and infotexts[index] else read_infotext(image)
        out.append(encode_image_base64(image, text, fmt, quality=int(opts["jpeg_quality"]),
                                       lossless=bool(opts["webp_lossless"])))
    return out


def keep_overrides(body: GenerationBody, request: GenerationRequest, services) -> dict:
    """``override_settings_restore_afterwards: false``: the job's overrides become the server's options (A1111).

    Returns the options changed; the checkpoint the job loaded stays loaded as it is.
    """
    if body.override_settings_restore_afterwards or services.options is None:
        return {}
    changes = dict(request.override_settings)
    if request.checkpoint:
        changes["sd_model_checkpoint"] = request.checkpoint
    return services.options.update(changes) if changes else {}


def encode_extras_images(result: ExtrasResult, options=None) -> list[str]:
    """Base64 extras outputs as A1111 returns them: the source's own infotext kept, a ``postprocessing`` chunk added."""
    opts = effective_options(options)
    fmt = str(opts["samples_format"]).lower()
    sources = list(result.source_infotexts) + [""] * (len(result.images) - len(result.source_infotexts))
    posts = list(result.infotexts) + [""] * (len(result.images) - len(result.infotexts))
    return [encode_image_base64(image, source or None, fmt, quality=int(opts["jpeg_quality"]),
                                lossless=bool(opts["webp_lossless"]), chunks={"postprocessing": post})
            for image, source, post in zip(result.images, sources, posts)]


def echo_parameters(body: GenerationBody) -> dict:
    """The request as A1111 echoes it in ``parameters`` (init images and mask left out unless asked)."""
    params = body.model_dump()
    if isinstance(body, Img2ImgBody) and not body.include_init_images:
        params["init_images"] = None
        params["mask"] = None
    return params


def _int_or(value, default):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def generation_info(body: GenerationBody, request: GenerationRequest, result: GenerationResult,
                    services, job_timestamp: str) -> str:
    """A1111's ``info`` JSON string for a finished (or interrupted) generation."""
    params = dict(result.parameters or {})
    parsed = parse_infotext(result.infotexts[0]) if result.infotexts else {}
    current = getattr(services.models, "current_checkpoint", None)
    seeds = list(result.seeds) or ([request.seed] if request.seed >= 0 else [])
    prompts = list(result.prompts) or [request.prompt] * max(1, len(result.images))
    negatives = list(result.negative_prompts) or [request.negative_prompt] * len(prompts)
    extra = {k: v for k, v in parsed.items() if k not in _BASIC_INFOTEXT_KEYS}
    info = {
        "prompt": prompts[0] if prompts else request.prompt,
        "all_prompts": prompts,
        "negative_prompt": negatives[0] if negatives else request.negative_prompt,
        "all_negative_prompts": negatives,
        "seed": seeds[0] if seeds else request.seed,
        "all_seeds": seeds,
        "subseed": result.subseeds[0] if result.subseeds else body.subseed,
        "all_subseeds": list(result.subseeds),
        "subseed_strength": request.subseed_strength,
        "width": _int_or(parsed.get("Size-1"), request.width),
        "height": _int_or(parsed.get("Size-2"), request.height),
        "sampler_name": parsed.get("Sampler", request.sampler_name),
        "cfg_scale": request.cfg_scale,
        "steps": request.steps,
        "batch_size": request.batch_size,
        "restore_faces": request.restore_faces,
        "face_restoration_model": request.face_restorer if request.restore_faces else None,
        "sd_model_name": parsed.get("Model") or (current.model_name if current is not None else None),
        "sd_model_hash": parsed.get("Model hash") or (current.short_hash if current is not None else None),
        "sd_vae_name": parsed.get("VAE"),
        "sd_vae_hash": parsed.get("VAE hash"),
        "seed_resize_from_w": request.seed_resize_from_w if request.seed_resize_from_w > 0 else -1,
        "seed_resize_from_h": request.seed_resize_from_h if request.seed_resize_from_h > 0 else -1,
        "denoising_strength": request.denoising_strength if (request.init_image is not None or request.enable_hr)
        else None,
        "extra_generation_params": extra,
        "index_of_first_image": 0,
        "infotexts": list(result.infotexts),
        "styles": list(request.styles),
        "job_timestamp": job_timestamp,
        "clip_skip": request.clip_skip,
        "is_using_inpainting_conditioning": bool(
            request.mask is not None and current is not None
            and getattr(getattr(current, "detection", None), "inpainting", False)),
        "version": vocabulary.VERSION,
    }
    # The engine's own figures win where it gives them under A1111's keys.
    info.update({k: v for k, v in params.items() if k in info})
    if result.warnings:
        info["warnings"] = list(result.warnings)
    if getattr(result, "memory_plan", ""):
        info["memory_plan"] = result.memory_plan
    if getattr(result, "notes", None):
        info["notes"] = list(result.notes)
    return json.dumps(info, default=lambda o: None)


def job_timestamp() -> str:
    """A1111's job timestamp format."""
    return datetime.datetime.now().strftime("%Y%m%d%H%M%S")


def plaintext_to_html(text: str) -> str:
    """Text as A1111's ``html_info``: escaped lines in one paragraph."""
    return "<p>" + "<br>\n".join(html.escape(line) for line in (text or "").split("\n")) + "</p>"
