"""Routes that make or read images: txt2img, img2img, extras and png-info (A1111 shapes)."""
from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from webui.api import convert
from webui.api.field_report import ignored_field_warnings
from webui.api.jobs_bridge import await_job, caller_of
from webui.api.models import ExtrasBatchBody, ExtrasSingleBody, Img2ImgBody, PngInfoBody, Txt2ImgBody
from webui.api.script_fields import attach_script
from webui.images import read_image_info
from webui.infotext import parse_infotext
from webui.schemas import ExtrasResult, GenerationResult, InvalidRequest


def _generation_response(body, request, result, services, timestamp) -> dict:
    result = result if isinstance(result, GenerationResult) else GenerationResult()
    # Fields accepted but not applied come first among the warnings (the stored result stays as it was).
    result = dataclasses.replace(result, warnings=ignored_field_warnings(body) + list(result.warnings))
    images = (convert.encode_images(result.images, result.infotexts, services.options, request.override_settings)
              if body.send_images else [])
    return {
        "images": images,
        "parameters": convert.echo_parameters(body),
        "info": convert.generation_info(body, request, result, services, timestamp),
    }


def _extras_result(result) -> ExtrasResult:
    if isinstance(result, ExtrasResult):
        return result
    return ExtrasResult()


def create_generation_router(services) -> APIRouter:
    """txt2img, img2img, extra-single-image, extra-batch-images and png-info."""
    router = APIRouter(prefix="/sdapi/v1", tags=["generation"])
    max_pixels = services.settings.max_image_pixels

    # The four blocking endpoints are async: converting and encoding run in the thread pool, and the wait
    # for the job holds no thread, so many waiting clients never stop /progress or /interrupt from answering.
    @router.post("/txt2img")
    async def txt2img(body: Txt2ImgBody, http: Request):
        """Make images from a prompt; waits for the queued job (A1111's TextToImageResponse)."""
        return await _generate(body, http, "txt2img", convert.txt2img_request)

    @router.post("/img2img")
    async def img2img(body: Img2ImgBody, http: Request):
        """Change an init image (inpaint when a mask comes too); waits for the queued job."""
        return await _generate(body, http, "img2img", convert.img2img_request)

    async def _generate(body, http: Request, kind: str, make_request):
        def prepare():
            return attach_script(body, make_request(body, services), services), convert.job_timestamp()

        request, timestamp = await run_in_threadpool(prepare)
        result = await await_job(services.queue, kind, request, caller_of(http).owner)

        def respond():
            convert.keep_overrides(body, request, services)
            return _generation_response(body, request, result, services, timestamp)

        return await run_in_threadpool(respond)

    @router.post("/extra-single-image")
    async def extra_single_image(body: ExtrasSingleBody, http: Request):
        """Upscale and/or restore faces of one image (A1111's ExtrasSingleImageResponse)."""
        def prepare():
            return convert.extras_request(body, [convert.decode_image(body.image, "image", max_pixels)], [])

        request = await run_in_threadpool(prepare)
        result = _extras_result(await await_job(services.queue, "extras", request, caller_of(http).owner))

        def respond():
            encoded = convert.encode_extras_images(result, services.options)
            return {
                "html_info": convert.plaintext_to_html(result.infotexts[0] if result.infotexts else ""),
                "image": (encoded[0] if encoded else None) if body.show_extras_results else None,
            }

        return await run_in_threadpool(respond)

    @router.post("/extra-batch-images")
    async def extra_batch_images(body: ExtrasBatchBody, http: Request):
        """Upscale and/or restore faces of several images (A1111's ExtrasBatchImagesResponse)."""
        if not body.imageList:
            raise InvalidRequest("imageList is empty: send at least one {data, name} image", field="imageList")

        def prepare():
            images = [convert.decode_image(item.data, f"imageList.{i}.data", max_pixels)
                      for i, item in enumerate(body.imageList)]
            return convert.extras_request(body, images, [item.name for item in body.imageList])

        request = await run_in_threadpool(prepare)
        result = _extras_result(await await_job(services.queue, "extras", request, caller_of(http).owner))

        def respond():
            return {
                "html_info": convert.plaintext_to_html(result.infotexts[0] if result.infotexts else ""),
                "images": (convert.encode_extras_images(result, services.options)
                           if body.show_extras_results else []),
            }

        return await run_in_threadpool(respond)

    @router.post("/png-info")
    def png_info(body: PngInfoBody):
        """The infotext an image carries, its other metadata, and the infotext parsed into fields."""
        image = convert.decode_image(body.image, "image", max_pixels)
        info, items = read_image_info(image)
        return {"info": info or "", "items": items, "parameters": parse_infotext(info) if info else {}}

    @router.post("/interrogate")
    def interrogate():
        """Not offered: no captioning model ships with this server."""
        raise InvalidRequest("interrogate is not supported by this server", field="model")

    return router
