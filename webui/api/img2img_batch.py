"""``POST /api/v1/img2img-batch``: A1111's img2img Batch tab over HTTP (input, output and mask folders).

Every image of ``input_dir`` runs as one img2img job with the body's other fields;
a file of the same name (or stem) in ``inpaint_mask_dir`` makes it an inpaint job;
with ``use_png_info`` the image's own infotext fills the fields the body does not
set. Results go to ``output_dir`` under the input's name (else saved as usual).
Folders must lie inside the outputs folder or another allowed root (422 otherwise);
with accounts, only admins may use it (403), as Extras' batch from a folder.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from webui.api import convert
from webui.api.errors import OptionForbidden
from webui.api.jobs_bridge import await_job, caller_of
from webui.api.models import Img2ImgBody
from webui.batch_folders import mask_for, plan_folder_batch, read_image, write_results
from webui.saving import effective_options
from webui.schemas import GenerationResult, image_to_base64


class Img2ImgBatchBody(Img2ImgBody):
    """An img2img body plus A1111's Batch tab folders."""

    input_dir: str = ""
    output_dir: str = ""
    inpaint_mask_dir: str = ""
    use_png_info: bool = False


def _encoded(path: Path, field: str, max_pixels: int) -> tuple[str, str | None]:
    """A file as the base64 an A1111 body carries, and its infotext."""
    image, infotext = read_image(path, field, max_pixels)
    return image_to_base64(image), infotext


def create_img2img_batch_router(services) -> APIRouter:
    """The img2img batch route of the native API."""
    router = APIRouter(prefix="/api/v1", tags=["generation"])
    settings = services.settings

    @router.post("/img2img-batch")
    async def img2img_batch(body: Img2ImgBatchBody, http: Request):
        """img2img (or inpaint) every image of a folder; answers the files written and each one's warnings.

        Async like the other waiting endpoints: file work runs in the thread pool and the wait for each
        job holds no thread.
        """
        caller = caller_of(http)
        if caller.user is not None and not caller.admin:  # the outputs folder holds every user's images
            raise OptionForbidden("only an admin may process a folder of the server", field="input_dir")

        def plan():
            batch = plan_folder_batch(settings, body.input_dir, body.inpaint_mask_dir, body.output_dir)
            return batch.inputs, batch.masks, batch.output, effective_options(services.options, body.override_settings)

        def prepare(path, masks, output):
            init, infotext = _encoded(path, "input_dir", settings.max_image_pixels)
            changes = {"init_images": [init], "save_images": output is None and body.save_images}
            mask = mask_for(path, masks)
            if mask is not None:
                changes["mask"] = _encoded(mask, "inpaint_mask_dir", settings.max_image_pixels)[0]
            if body.use_png_info and infotext:
                changes["infotext"] = infotext
            one = Img2ImgBody.model_validate({**body.model_dump(exclude_unset=True, exclude=set(
                Img2ImgBatchBody.model_fields) - set(Img2ImgBody.model_fields)), **changes})
            return convert.img2img_request(one, services)

        def store(path, result, output, opts) -> list[str]:
            if output is None:
                return list(result.saved_paths)
            return write_results(path, result.images, result.infotexts, output, opts)

        inputs, masks, output, opts = await run_in_threadpool(plan)
        files, processed, warnings = [], [], []
        for path in inputs:
            request = await run_in_threadpool(prepare, path, masks, output)
            result = await await_job(services.queue, "img2img", request, caller.owner)
            result = result if isinstance(result, GenerationResult) else GenerationResult()
            processed.append(path.name)
            warnings.extend(f"{path.name}: {w}" for w in result.warnings)
            files.extend(await run_in_threadpool(store, path, result, output, opts))
        return {"processed": processed, "files": files, "warnings": list(dict.fromkeys(warnings))}

    return router
