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
from PIL import Image
from starlette.concurrency import run_in_threadpool

from webui.api import convert
from webui.api.errors import OptionForbidden
from webui.api.jobs_bridge import await_job, caller_of
from webui.api.models import Img2ImgBody
from webui.images import read_infotext, write_image
from webui.saving import effective_options
from webui.schemas import GenerationResult, InvalidRequest, image_to_base64
from webui.security.folders import checked_folder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_BATCH_FILES = 1000


class Img2ImgBatchBody(Img2ImgBody):
    """An img2img body plus A1111's Batch tab folders."""

    input_dir: str = ""
    output_dir: str = ""
    inpaint_mask_dir: str = ""
    use_png_info: bool = False


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _mask_for(image: Path, masks: list[Path]) -> Path | None:
    """The mask of the same file name, else of the same stem (A1111's rule)."""
    by_name = {p.name: p for p in masks}
    return by_name.get(image.name) or next((p for p in masks if p.stem == image.stem), None)


def _encoded(path: Path, field: str, max_pixels: int) -> tuple[str, str | None]:
    """A file as the base64 an A1111 body carries, and its infotext."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                raise InvalidRequest(f"{field}: {path.name} is over the limit of {max_pixels} pixels", field=field)
            image.load()
            return image_to_base64(image), read_infotext(image)
    except OSError:
        raise InvalidRequest(f"{field}: {path.name} is not a readable image", field=field) from None


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
            inputs = _images_in(checked_folder(settings, body.input_dir, "input_dir"))
            if not inputs:
                raise InvalidRequest("input_dir holds no images", field="input_dir")
            if len(inputs) > MAX_BATCH_FILES:
                raise InvalidRequest(f"input_dir holds over {MAX_BATCH_FILES} images", field="input_dir")
            masks = _images_in(checked_folder(settings, body.inpaint_mask_dir, "inpaint_mask_dir")) \
                if body.inpaint_mask_dir else []
            output = checked_folder(settings, body.output_dir, "output_dir", must_exist=False) \
                if body.output_dir else None
            return inputs, masks, output, effective_options(services.options, body.override_settings)

        def prepare(path, masks, output):
            init, infotext = _encoded(path, "input_dir", settings.max_image_pixels)
            changes = {"init_images": [init], "save_images": output is None and body.save_images}
            mask = _mask_for(path, masks)
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
            return [str(write_image(image, output, path.stem if index == 0 else f"{path.stem}-{index}",
                                    fmt=str(opts["samples_format"]), infotext=text, add_number=False,
                                    quality=int(opts["jpeg_quality"]), lossless=bool(opts["webp_lossless"])))
                    for index, (image, text) in enumerate(zip(result.images, result.infotexts))]

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
