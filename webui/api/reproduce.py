"""``POST /api/v1/reproduce``: run an image's infotext again through the queue and compare the pixels."""
from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from webui import vocabulary
from webui.api import convert
from webui.api.jobs_bridge import await_job
from webui.api.models import ReproduceBody
from webui.images import read_infotext
from webui.reproduce import pixel_difference, plan_reproduction
from webui.schemas import GenerationResult, InvalidRequest, image_to_base64


def create_reproduce_router(services) -> APIRouter:
    """The Reproduce route of the native API."""
    router = APIRouter(prefix="/api/v1", tags=["reproduce"])

    @router.post("/reproduce")
    async def reproduce(body: ReproduceBody):
        """Make the image again from its parameters; answers the new image, the difference and what was not honoured.

        Decoding and comparing run in the thread pool; the wait for the job holds no thread.
        """
        def plan():
            original = convert.decode_image(body.image, "image", services.settings.max_image_pixels)
            text = read_infotext(original)
            if not text:
                raise InvalidRequest("the image carries no generation parameters (no infotext)", field="image")
            return original, text, plan_reproduction(text, services.catalog, version=vocabulary.VERSION)

        original, text, planned = await run_in_threadpool(plan)
        result = await await_job(services.queue, "txt2img", planned.request)
        if not isinstance(result, GenerationResult) or not result.images:
            raise InvalidRequest("the reproduction made no image (interrupted or skipped)", field="image")

        def respond():
            new = result.images[0]
            difference, picture = pixel_difference(original, new)
            infotext = result.infotexts[0] if result.infotexts else ""
            return {
                "images": convert.encode_images([new], [infotext]),
                "infotext": infotext,
                "original_infotext": text,
                "difference": difference.as_dict(),
                "difference_image": image_to_base64(picture) if body.include_difference_image else None,
                "unmet": planned.unmet,
                "warnings": list(result.warnings),
            }

        return await run_in_threadpool(respond)

    return router
