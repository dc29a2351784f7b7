"""The img2img tab's Batch sub-tab (A1111's): every image of a server folder runs as one queued img2img job.

The folder rules (allowed roots, mask pairing, PNG info, output names) live in
webui.batch_folders, shared with ``POST /api/v1/img2img-batch``.
"""
from __future__ import annotations

import dataclasses

import gradio as gr

from webui.batch_folders import FolderBatch, mask_for, plan_folder_batch, read_image, write_results
from webui.infotext import infotext_to_request_fields, parse_infotext
from webui.saving import effective_options
from webui.schemas import GenerationRequest, InvalidRequest
from webui.ui import common, results


def build_batch_inputs(tab: str = "img2img") -> dict:
    """The Batch sub-tab's widgets, by name (none is a request field: the batch handler reads them)."""
    gr.Markdown("Process every image of a folder on the server (inside the outputs folder) with the settings "
                "of this tab. A mask of the same name in the mask folder makes an image an inpaint job.")
    return {
        "batch_input_dir": gr.Textbox(label="Input directory", elem_id=f"{tab}_batch_input_dir"),
        "batch_output_dir": gr.Textbox(label="Output directory", elem_id=f"{tab}_batch_output_dir",
                                       placeholder="Leave empty to save to the default folder"),
        "batch_inpaint_mask_dir": gr.Textbox(label="Inpaint batch mask directory (optional)",
                                             elem_id=f"{tab}_batch_inpaint_mask_dir"),
        "batch_use_png_info": gr.Checkbox(label="Append png info to prompts", elem_id=f"{tab}_batch_use_png_info"),
    }


def with_png_info(request: GenerationRequest, infotext: str | None) -> GenerationRequest:
    """The image's own prompts appended to the tab's (A1111's "Append png info to prompts")."""
    if not infotext:
        return request
    fields = infotext_to_request_fields(parse_infotext(infotext))
    prompt = " ".join(p for p in (request.prompt, fields.get("prompt", "")) if p)
    negative = " ".join(p for p in (request.negative_prompt, fields.get("negative_prompt", "")) if p)
    return dataclasses.replace(request, prompt=prompt, negative_prompt=negative)


def request_for(template: GenerationRequest, path, batch: FolderBatch, use_png_info: bool,
                max_pixels: int) -> GenerationRequest:
    """The job for one input image: the tab's settings with this image (and its mask) in."""
    image, infotext = read_image(path, "input_dir", max_pixels)
    mask_path = mask_for(path, batch.masks)
    mask = read_image(mask_path, "inpaint_mask_dir", max_pixels)[0] if mask_path is not None else None
    request = dataclasses.replace(template, init_image=image, mask=mask,
                                  save_images=batch.output is None and template.save_images)
    return with_png_info(request, infotext) if use_png_info else request


def _error(panel, exc) -> dict:
    message = common.readable_error(exc)
    common.warn(message)
    return {panel.status: f"**Error:** {common.markdown_text(message)}"}


def run_batch(panel: results.ResultPanel, services, build_request, request: gr.Request, own: dict):
    """Submit one img2img job per image of the input folder, one after the other, with progress and results."""
    try:
        caller = common.caller(request)
        if caller.user is not None and not caller.admin:  # the outputs folder holds every user's images
            raise InvalidRequest("Only an admin may process a folder of the server.", field="input_dir")
        batch = plan_folder_batch(services.settings, own.get("batch_input_dir") or "",
                                  own.get("batch_inpaint_mask_dir") or "", own.get("batch_output_dir") or "")
        template = build_request()
        opts = effective_options(services.options, template.override_settings)
    except Exception as exc:
        yield _error(panel, exc)
        return
    total, files, images = len(batch.inputs), [], []
    for number, path in enumerate(batch.inputs, 1):
        label = f"Batch image {number}/{total} ({common.markdown_text(path.name)})"
        try:
            job_request = request_for(template, path, batch, bool(own.get("batch_use_png_info")),
                                      services.settings.max_image_pixels)
            job = services.queue.submit("img2img", job_request, owner=caller.owner)
        except Exception as exc:
            yield _error(panel, exc)
            return
        for update in results.follow_job(panel, services, job.id):
            if panel.status in update:
                update[panel.status] = f"{label}: {update[panel.status]}"
            yield update
        job = services.queue.get(job.id)
        result = common.job_result(job)
        if common.job_status(job) != "succeeded" or result is None:
            return  # interrupted, canceled or failed: the message of follow_job stays on screen
        images.extend(result.images)
        if batch.output is not None:
            try:
                files.extend(write_results(path, result.images, result.infotexts, batch.output, opts))
            except OSError as exc:
                yield _error(panel, exc)
                return
    where = f" into {common.markdown_text(batch.output)}" if batch.output is not None else ""
    yield {panel.status: f"Batch done: {total} image(s) processed, {len(files) or len(images)} result(s) saved{where}.",
           panel.gallery: gr.Gallery(value=images, selected_index=0 if images else None)}
