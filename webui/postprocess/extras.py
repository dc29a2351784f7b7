"""A1111's Extras: upscale (one or two upscalers) and restore faces, image by image, with infotext fields."""
from __future__ import annotations

from typing import Callable

from PIL import Image

from webui.schemas import ExtrasRequest, InvalidRequest, JobControl, JobInterrupted, Progress, check_request_limits
from webui.postprocess.faces import FaceRestorers
from webui.postprocess.upscalers import UpscalerRegistry


def scale_to_size(
    image: Image.Image,
    width: int,
    height: int,
    crop: bool,
    upscale: Callable[[Image.Image, float], Image.Image] | None = None,
) -> Image.Image:
    """Scale ``image`` to cover ``width`` x ``height`` (keeping its aspect), then optionally centre-crop to exactly that.

    As A1111: the factor is ``max(width / w, height / h)``; with ``crop`` the
    result is exactly ``width`` x ``height``, without it one side may be larger.
    ``upscale(image, factor)`` does the scaling (Lanczos when not given).
    """
    if width <= 0 or height <= 0:
        raise InvalidRequest(f"target size must be positive, got {width}x{height}", field="upscaling_resize_w")
    factor = max(width / image.width, height / image.height)
    if upscale is None:
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        scaled = image.resize(size, Image.Resampling.LANCZOS)
    else:
        scaled = upscale(image, factor)
    if not crop:
        return scaled
    left = (scaled.width - width) // 2
    top = (scaled.height - height) // 2
    return scaled.crop((left, top, left + width, top + height))


def _number(value: float):
    """2.0 -> 2, as A1111's infotext shows whole factors."""
    value = float(value)
    return int(value) if value.is_integer() else round(value, 3)


def _check(request: ExtrasRequest, upscalers: UpscalerRegistry, faces: FaceRestorers) -> None:
    check_request_limits(request)  # the request model's ranges, in case a caller changed a field
    upscalers.get(request.upscaler_1)  # NotFound early, before any work
    upscalers.get(request.upscaler_2)
    if request.gfpgan_visibility > 0:
        faces.model_path("GFPGAN")
    if request.codeformer_visibility > 0:
        faces.model_path("CodeFormer")


def _upscale(image: Image.Image, request: ExtrasRequest, upscalers: UpscalerRegistry, info: dict,
             should_stop=None) -> Image.Image:
    if request.upscaler_1 == "None":
        return image  # as A1111: no first upscaler, no upscaling step at all

    def one(name: str) -> Image.Image:
        def by(img: Image.Image, factor: float) -> Image.Image:
            return upscalers.upscale(img, name, factor, should_stop=should_stop)

        if request.resize_mode == 1:
            w, h = request.upscaling_resize_w, request.upscaling_resize_h
            info["Postprocess upscale to"] = f"{w}x{h}"
            out = scale_to_size(image, w, h, request.upscaling_crop, upscale=by)
            if request.upscaling_crop:
                info["Postprocess crop to"] = f"{out.width}x{out.height}"
            return out
        info["Postprocess upscale by"] = _number(request.upscaling_resize)
        return by(image, request.upscaling_resize)

    result = one(request.upscaler_1)
    info["Postprocess upscaler"] = upscalers.get(request.upscaler_1).name
    if request.upscaler_2 != "None" and request.extras_upscaler_2_visibility > 0:
        second = one(request.upscaler_2)
        if second.mode != result.mode:
            second = second.convert(result.mode)
        if second.size != result.size:
            second = second.resize(result.size, Image.Resampling.LANCZOS)
        result = Image.blend(result, second, request.extras_upscaler_2_visibility)
        info["Postprocess upscaler 2"] = upscalers.get(request.upscaler_2).name
    return result


def _restore(image: Image.Image, request: ExtrasRequest, faces: FaceRestorers, info: dict,
             should_stop=None) -> Image.Image:
    if request.gfpgan_visibility > 0:
        image = faces.restore(image, "GFPGAN", request.gfpgan_visibility, should_stop=should_stop)
        info["GFPGAN visibility"] = round(request.gfpgan_visibility, 3)
    if request.codeformer_visibility > 0:
        image = faces.restore(image, "CodeFormer", request.codeformer_visibility, request.codeformer_weight,
                              should_stop=should_stop)
        info["CodeFormer visibility"] = round(request.codeformer_visibility, 3)
        info["CodeFormer weight"] = round(request.codeformer_weight, 3)
    return image


def run_extras(
    request: ExtrasRequest,
    upscalers: UpscalerRegistry,
    faces: FaceRestorers,
    control: JobControl | None = None,
) -> list[tuple[Image.Image, dict]]:
    """Run every image of ``request`` through upscaling and face restoration.

    Returns each output with its A1111 ``postprocessing`` infotext fields, e.g.
    ``{"Postprocess upscale by": 2, "Postprocess upscaler": "Lanczos"}``.
    Stops between images when ``control.interrupted()``, raising JobInterrupted
    with the finished outputs as ``partial``.
    """
    if not request.images:
        raise InvalidRequest("no images given", field="images")
    _check(request, upscalers, faces)
    outputs: list[tuple[Image.Image, dict]] = []
    for index, image in enumerate(request.images):
        if control is not None:
            if control.interrupted():
                raise JobInterrupted(partial=outputs)
            if control.take_skip():
                continue
            control.report(Progress(image_index=index, image_count=len(request.images), step=0, steps=1))
        info: dict = {}
        result = image.convert("RGB")
        should_stop = control.interrupted if control is not None else None
        try:
            if request.upscale_first:
                result = _upscale(result, request, upscalers, info, should_stop)
                result = _restore(result, request, faces, info, should_stop)
            else:
                result = _restore(result, request, faces, info, should_stop)
                result = _upscale(result, request, upscalers, info, should_stop)
        except InterruptedError:  # stopped between two tiles of a model upscale or two faces
            raise JobInterrupted(partial=outputs) from None
        outputs.append((result, info))
    return outputs
