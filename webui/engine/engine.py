"""Engine: ``generate(request) -> result`` for txt2img, img2img and inpaint, and ``extras``.

One code path for all three modes, numbered like a diffusers pipeline. It knows
nothing of threads, gradio or HTTP: progress and stopping go through the
JobControl it is handed.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import random
import time
import weakref

import numpy as np
import torch
from PIL import Image

from webui import vocabulary
from webui.addons import addons_infotext, find_addon, resolve_addons
from webui.catalog import Catalog
from webui.config import Settings
from webui.controlnet import find_controlnet_args, parse_units, units_infotext, with_mask_as_input
from webui.devices import free_memory_bytes
from webui.engine import imageprep, latent_preview, vae_ops
from webui.engine.controlnet import ControlRun, is_adapter, prepare_unit
from webui.engine.diffusion import Conditioning, ModelSwitch, SamplingJob, denoise
from webui.engine.guidance.soft_inpaint import SoftInpaintRun
from webui.engine.noise import make_image_rng, sampler_uses_ensd, variation_seeds
from webui.engine.prompting import encode_prompts, prepare_prompts
from webui.engine.seamless import CircularPadding
from webui.engine.sampling.denoiser import alphas_cumprod_from_config, rescale_zero_terminal_snr
from webui.engine.sampling.runner import Plan
from webui.images import read_infotext
from webui.models.actions import MODEL_JOB_KIND, apply_model_action
from webui.vocabulary import (
    LATENT_UPSCALE_MODES, MASKED_CONTENT, OPTION_DEFAULTS, RANDN_SOURCES, VERSION, SamplerSettings,
)
from webui.models.manager import ModelManager
from webui.models.memory_plan import JobFootprint
from webui.models.placement import execution_device
from webui.option_overlay import JobOptions
from webui.schemas import (
    DETECT_JOB_KIND, DetectRequest, DetectResult, ExtrasRequest, ExtrasResult, GenerationRequest, GenerationResult, InvalidRequest, JobControl,
    JobInterrupted, NotFound, NullControl, Progress, check_request_limits, image_from_base64,
)

log = logging.getLogger(__name__)



def _image_from_payload(value, where: str) -> Image.Image:
    """A unit image given to the engine directly as base64 (the API and UI hand over decoded images)."""
    try:
        return image_from_base64(value) if isinstance(value, str) else value
    except ValueError as exc:
        raise InvalidRequest(f"{where}: {exc}", field=where) from None


class Engine:
    """Runs generation and extras requests on the ModelManager's live model."""

    def __init__(self, settings: Settings, catalog: Catalog, models: ModelManager, *, upscalers=None,
                 faces=None, wildcards=None, styles=None, options=None):
        self.settings = settings
        self.catalog = catalog
        self.models = models
        self.upscalers = upscalers
        self.faces = faces
        self.wildcards = wildcards
        self.styles = styles
        self.options = options
        self._factors_by_vae: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._decoder_fit_by_vae: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------ public surface
    def run(self, kind: str, request, control: JobControl):
        """The single entry point of the queue worker."""
        if getattr(request, "script_name", ""):  # the queue's ScriptRunner runs scripts; never ignore one
            raise InvalidRequest(f"script {request.script_name!r}: scripts run through webui.scripts.ScriptRunner",
                                 field="script_name")
        if kind in ("txt2img", "img2img"):
            return self.generate(request, control)
        if kind == "extras":
            return self.extras(request, control)
        if kind == DETECT_JOB_KIND:
            return self.detect(request, control)
        if kind == MODEL_JOB_KIND:  # checkpoint load/unload/reload, in order with the other jobs
            return apply_model_action(self.models, request)
        raise InvalidRequest(f"unknown job kind {kind!r}", field="kind")

    def sampler_names(self) -> list[str]:
        return vocabulary.sampler_names()

    def scheduler_names(self) -> list[str]:
        return vocabulary.schedule_labels()

    def latent_upscale_modes(self) -> list[str]:
        return list(LATENT_UPSCALE_MODES)

    # ------------------------------------------------------------ generation
    def for_job(self, overrides) -> "Engine":
        """This engine seeing the options under a job's ``override_settings`` (itself when there are none)."""
        if not overrides or isinstance(self.options, JobOptions):
            return self
        job_engine = copy.copy(self)
        job_engine.options = JobOptions(self.options, overrides)
        return job_engine

    def generate(self, request: GenerationRequest, control: JobControl | None = None) -> GenerationResult:
        """Make the images a request asks for; saves them when the request says so."""
        if request.override_settings and not isinstance(self.options, JobOptions):
            return self.for_job(request.override_settings).generate(request, control)
        control = control or NullControl()
        # 1. Check inputs
        warnings = self._check_inputs(request)
        spec, schedule, sampler_warnings = vocabulary.resolve(request.sampler_name, request.scheduler)
        warnings.extend(sampler_warnings)
        request.sampler_name, request.scheduler = spec.name, schedule.label
        seed = request.seed if request.seed is not None and request.seed >= 0 else random.randrange(2**32)
        subseed = request.subseed if request.subseed is not None and request.subseed >= 0 \
            else random.randrange(2**32)
        count = request.batch_size * request.n_iter
        all_seeds, all_subseeds = variation_seeds(seed, subseed, request.subseed_strength, count)
        result = GenerationResult(warnings=warnings)
        progress = Progress(image_count=count, started_at=time.time())
        saver = self._saver(request, "img2img" if request.init_image is not None else "txt2img")

        with self.models.lock, CircularPadding(request.tiling) as seamless:
            # 2. Model, and what the prompt asks of it
            model = self.models.ensure(request.checkpoint)
            checkpoint = self.models.current_checkpoint
            memory = self.models.plan_memory(self._footprint(request, model), self._forced_offload())
            self.models.place(memory)  # before addons(): a change of placement takes the job's LoRAs off first
            result.memory_plan = memory.describe()
            log.info(result.memory_plan)
            compiled_unet = self._compiled_unet(memory, result)
            addons = self.models.addons()
            try:
                for batch_index in range(request.n_iter):
                    # the last batch's hires pass or refiner switched models
                    if (request.hr_checkpoint or request.refiner_checkpoint) and batch_index:
                        model, addons = self.models.ensure(checkpoint), self.models.addons()
                    batch = slice(batch_index * request.batch_size, (batch_index + 1) * request.batch_size)
                    progress.image_index = batch_index * request.batch_size
                    self._generate_batch(request, all_seeds[batch], all_subseeds[batch], model, checkpoint,
                                         addons, spec, schedule, control, progress, result,
                                         saving=(saver, all_seeds, batch_index), seamless=seamless)
            except JobInterrupted as stop:
                stop.partial = result
                raise
            finally:
                if compiled_unet is not None:
                    result.notes.extend(compiled_unet.finish_job())
                # the job's own checkpoint stays the live one, as before the job
                if request.hr_checkpoint or request.refiner_checkpoint:
                    self.models.ensure(checkpoint)
        grid = None if request.do_not_save_grid else saver.save_grid(request.batch_size)
        if grid is not None:
            log.info("saved grid %s", grid)
        result.warnings = list(dict.fromkeys(result.warnings))
        return result

    def _check_inputs(self, r: GenerationRequest) -> list[str]:
        """Warnings for what was adjusted; InvalidRequest for what cannot run (the request model's limits first)."""
        warnings = []
        check_request_limits(r)
        if r.width * r.height * r.batch_size > self.settings.max_image_pixels:
            raise InvalidRequest("image too large for this server's limit", field="width")
        for name in ("width", "height"):
            value = getattr(r, name)
            if value % 8:
                rounded = imageprep.round_to_multiple(value)
                warnings.append(f"{name} {value} is not a multiple of 8; using {rounded}")
                setattr(r, name, rounded)
        if r.extra_init_images:
            # A1111: several init images make a batch of that many (one image each); more than batch_size is an error.
            count = 1 + len(r.extra_init_images)
            if count > r.batch_size:
                raise InvalidRequest(f"{count} init images for a batch size of {r.batch_size}: send at most "
                                     "batch_size images (one per image of a batch)", field="init_images")
            r.batch_size = count
        self._resolve_noise_settings(r)
        self._add_default_lora(r, warnings)
        return warnings

    def _add_default_lora(self, r: GenerationRequest, warnings: list[str]) -> None:
        """A1111's ``sd_lora`` ("Add network to prompt"): ``<lora:NAME:multiplier>`` ends every prompt of the job,
        unless the prompt already names that LoRA."""
        name = str(self.options.get("sd_lora", "None") or "None") if self.options is not None else "None"
        if name == "None":
            return
        try:
            self.catalog.find_lora(name)
        except NotFound:
            warnings.append(f"sd_lora: LoRA {name!r} not found; not added to the prompt")
            return
        if f"<lora:{name}:" in (r.prompt or "") or f"<lora:{name}>" in (r.prompt or ""):
            return
        multiplier = self.options.get("extra_networks_default_multiplier", 1.0)
        r.prompt = f"{r.prompt or ''}<lora:{name}:{multiplier}>"

    def _init_upscaler(self, warnings: list[str]):
        """A1111's ``upscaler_for_img2img``: ``upscale(image, scale)`` for init images smaller than the target,
        or None for plain Lanczos."""
        name = self.options.get("upscaler_for_img2img", "Lanczos") if self.options is not None else None
        if not name or name in ("None", "Lanczos") or self.upscalers is None:
            return None
        try:
            self.upscalers.get(name)
        except NotFound:
            warnings.append(f"upscaler_for_img2img: upscaler {name!r} not found; init images resized with Lanczos")
            return None
        return lambda image, scale: self.upscalers.upscale(image, name, scale)

    def _resolve_noise_settings(self, r: GenerationRequest) -> None:
        """Fill the request's noise options from the settings (A1111's option keys) and check them."""
        option = (lambda key, default: self.options.get(key, default)) if self.options is not None \
            else (lambda key, default: default)
        if r.randn_source is None:
            r.randn_source = str(option("randn_source", "GPU"))
        if r.randn_source not in RANDN_SOURCES:
            raise InvalidRequest(f"randn_source must be one of {', '.join(RANDN_SOURCES)}", field="randn_source")
        if r.eta_noise_seed_delta is None:
            r.eta_noise_seed_delta = option("eta_noise_seed_delta", 0)
        value = r.eta_noise_seed_delta
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest("eta_noise_seed_delta must be a whole number", field="eta_noise_seed_delta")

    def _generate_batch(self, request, seeds, subseeds, model, checkpoint, addons, spec, schedule, control, progress,
                        result: GenerationResult, saving=None, seamless: CircularPadding | None = None) -> None:
        device = execution_device(model.unet)
        # 3. Prompts: styles, wildcards (per seed), LoRA tags, schedules
        plans = prepare_prompts(request, seeds, self.wildcards, self.styles)
        vae_choice = request.vae or (self.options.get("sd_vae") if self.options is not None else None)
        # disable_extra_networks (A1111): the tags are still taken out of the prompt, but nothing is applied.
        report = addons.prepare([] if request.disable_extra_networks else plans[0].loras, vae_choice)
        seamless = seamless or CircularPadding(False)
        seamless.apply(model.unet, model.vae)  # after prepare: the job's VAE file may have replaced the VAE
        self.models.refresh_placement()  # idem: a VAE swapped in is offloaded like the one it replaced
        result.warnings.extend(report.warnings)
        for plan in plans:
            result.warnings.extend(plan.warnings)
        # 4. Pixels in: init image / mask (img2img, inpaint)
        width, height = request.width, request.height
        inpaint = None
        init_images = None
        if request.init_image is not None:
            init_images, inpaint = self._prepare_init(request, width, height, self._init_upscaler(result.warnings))
            if inpaint is not None and inpaint.get("empty"):
                self._finish_unchanged(request, seeds, subseeds, plans, result, checkpoint)
                return
            if inpaint is not None:
                width, height = inpaint["work_size"]
        # 5. Encode prompts
        steps = request.steps
        positive_at, negative_at = encode_prompts(model, addons, plans, request.clip_skip)
        guidance = self._guidance_addons(request, result)
        # 6. Latents in
        factor = vae_ops.scale_factor(model.vae)
        tiling = self._tiling(model)
        plan = self._sampling_plan(request, model, spec, schedule)
        job = SamplingJob(seeds=seeds, latent_size=(height // factor, width // factor), steps=steps,
                          cfg_scale=float(request.cfg_scale), positive_at=positive_at, negative_at=negative_at,
                          plan=plan, progress=progress, addons=guidance)
        # Each image's noise streams: its seed, variation seed, RNG source and ENSD (A1111's ImageRNG).
        job.make_rng = lambda shape, rng_seeds, rng_device: make_image_rng(request, shape, rng_seeds, subseeds,
                                                                           rng_device)
        plan.infotext.update(addons_infotext(guidance))
        crop = (inpaint["box"], (request.width, request.height)) if inpaint and inpaint.get("box") else None
        job.controlnet = self._controlnet_run(request, model, width, height, seeds, result, crop)
        if job.controlnet is not None:
            plan.infotext.update(units_infotext([(u.unit, u.title) for u in job.controlnet.units]))
        job.time_ids = self._time_ids(model, width, height, len(seeds))
        if init_images is not None:
            job.init_latents = vae_ops.encode(model.vae, init_images, tiling=tiling, control=control)
            if request.resize_mode == 3 and inpaint is None:
                job.init_latents = torch.nn.functional.interpolate(job.init_latents, size=job.latent_size,
                                                                   mode="bilinear")
            job.strength = float(request.denoising_strength)
            job.noise_multiplier = float(request.initial_noise_multiplier)
        if inpaint is not None:
            self._attach_mask(job, model, inpaint, request)
        hires = request.enable_hr and request.init_image is None
        if not hires:  # with hires fix the refiner runs in the second pass (A1111's default)
            job.switch = self._refiner_switch(request, plans, width, height, len(seeds), vae_choice, seamless)
        previews_on = self.options is None or self.options.get("live_previews_enable", True)
        preview = None
        loop_control = control
        if previews_on:
            preview = self._live_preview(model, result.warnings)
            if self.options is not None and self.options.get("show_progress_every_n_steps") is not None:
                loop_control = latent_preview.PreviewPeriod(control, self.options.get("show_progress_every_n_steps"))
        # 7. Denoising loop
        if hires and request.firstpass_image is not None:
            # A1111's firstpass_image: the given picture stands for the first pass; only the hires pass runs.
            given = imageprep.resize_image(request.firstpass_image, 0, width, height)
            latents = vae_ops.encode(model.vae, [given] * len(seeds), tiling=tiling, control=control)
        else:
            latents = denoise(model.unet, job, loop_control, preview)
        stopped = job.stopped
        refiner_fields = {}
        if job.switch is not None and job.switch.done:
            model, refiner_fields = job.switch.model, job.switch.infotext
        if latents is None:  # stopped before the first step: nothing to show
            if stopped == "interrupt":
                raise JobInterrupted()
            progress.image_index += len(seeds)
            return
        if inpaint is not None and "soft_inpainting" in guidance:
            inpaint["composite_masks"] = SoftInpaintRun(guidance["soft_inpainting"]).composite_masks(
                job.mask, job.init_latents, latents, inpaint["work_mask"].size)
        # 8. Hires fix (txt2img second pass)
        hires_fields = {}
        if request.enable_hr and request.init_image is None and stopped is None:
            latents, hires_fields, stopped, model = self._stoppable_hires_pass(
                request, model, addons, plans, spec, schedule, latents, job, control, progress, seamless)
        # 9. Decode, restore faces, paste back, save
        pixels_per_latent = vae_ops.scale_factor(model.vae)
        note = vae_ops.memory_note(tiling, model.vae, latents.shape[-2] * pixels_per_latent,
                                   latents.shape[-1] * pixels_per_latent)
        if note is not None:
            log.info(note)
            result.warnings.append(note)
        images, upcast = vae_ops.decode(model.vae, latents, tiling=tiling, control=control)
        if upcast:
            result.warnings.append("the VAE produced NaNs in half precision; decoded in float32")
        for i, image in enumerate(images):
            image = self._postprocess_image(request, image, inpaint, i, control, result.warnings)
            plan = plans[i]
            image_hires = {k: v[i] if isinstance(v, list) else v for k, v in hires_fields.items()}
            fields = self._infotext_fields(request, seeds[i], plan, checkpoint, report, image.size, image_hires,
                                           inpaint is not None or request.init_image is not None, subseeds[i],
                                           addons.embedding_hashes(plan.prompt, plan.negative_prompt))
            fields.update(refiner_fields)
            fields = self._with_sampling_fields(fields, job.plan)
            context = self._name_context(request, seeds[i], plan, checkpoint, report, saving, i)
            self._emit(request, image, plan, seeds[i], subseeds[i], fields, result, saving[0] if saving else None,
                       context)
        progress.image_index += len(seeds)
        if stopped == "interrupt":  # A1111 returns the interrupted batch's images, then stops
            raise JobInterrupted()

    # ------------------------------------------------------------ img2img / inpaint helpers
    def _prepare_init(self, request, width, height, upscale=None):
        """The batch's init images (one per item: the request's images, or its one image repeated) and,
        for inpaint, the masks and paste-back information. ``upscale`` enlarges a smaller init image
        (see ``imageprep.resize_image``)."""
        sources = [image.convert("RGB") for image in [request.init_image, *request.extra_init_images]]
        if len(sources) == 1:
            sources = sources * request.batch_size
        if request.mask is None:
            return [imageprep.resize_image(init, request.resize_mode, width, height, upscale) for init in sources], None
        mode = request.resize_mode if request.resize_mode != 3 else 0
        images = [imageprep.resize_image(init, mode, width, height, upscale) for init in sources]
        mask = imageprep.prepare_mask(request.mask, images[0].size, bool(request.inpainting_mask_invert))
        if mask.getbbox() is None:
            return images[:1], {"empty": True, "image": images[0]}
        soft = imageprep.blur_mask_xy(mask, *_mask_blur_xy(request))
        # A1111's latent_mask: what the sampler keeps or repaints, while ``mask`` decides the paste-back.
        latent_mask = (imageprep.prepare_mask(request.latent_mask, images[0].size, False)
                       if request.latent_mask is not None else soft)
        info = {"originals": images, "mask": mask, "soft_mask": soft, "work_size": (width, height), "box": None}
        work_images, work_mask = images, soft
        if request.inpaint_full_res:
            box = imageprep.mask_box(mask, request.inpaint_full_res_padding, width, height)
            info["box"] = box
            work_images = [image.crop(box).resize((width, height), Image.LANCZOS) for image in images]
            work_mask = soft.crop(box).resize((width, height), Image.LANCZOS)
            latent_mask = latent_mask.crop(box).resize((width, height), Image.LANCZOS)
        if request.inpainting_fill == 0:
            work_images = [imageprep.fill_masked(image, work_mask) for image in work_images]
        info["work_mask"] = work_mask
        info["latent_mask"] = latent_mask
        return work_images, info

    def _attach_mask(self, job: SamplingJob, model, inpaint: dict, request) -> None:
        h, w = job.latent_size
        small = inpaint["latent_mask"].resize((w, h), Image.BILINEAR)
        mask = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).reshape(1, 1, h, w)
        if request.mask_round and "soft_inpainting" not in job.addons:
            mask = mask.round()  # A1111 rounds the latent mask unless asked not to (soft inpainting never does)
        batch = len(job.seeds)
        job.mask = mask.repeat(batch, 1, 1, 1).to(job.init_latents.device)
        job.noise_fill = {0: "original", 1: "original", 2: "latent noise", 3: "latent nothing"}[request.inpainting_fill]
        if model.inpainting:
            # 9-channel UNets see the mask and the image with the masked part blanked out.
            hard = (job.mask > 0.5).float()
            job.masked_image_latents = job.init_latents * (1 - hard)
            job.mask = hard

    def _finish_unchanged(self, request, seeds, subseeds, plans, result, checkpoint) -> None:
        result.warnings.append("the mask is empty: nothing to inpaint, the image is returned unchanged")
        image = imageprep.resize_image(request.init_image, 0, request.width, request.height)
        for seed, subseed, plan in zip(seeds, subseeds, plans):
            result.images.append(image.copy())
            result.seeds.append(seed)
            result.subseeds.append(subseed)
            result.prompts.append(plan.prompt)
            result.negative_prompts.append(plan.negative_prompt)
            result.infotexts.append("")

    def _postprocess_image(self, request, image, inpaint, index, control=None, warnings: list | None = None):
        if request.restore_faces and self.faces is not None:
            should_stop = control.interrupted if control is not None else None
            try:
                image = self.faces.restore(image, request.face_restorer, 1.0, request.codeformer_weight,
                                           should_stop=should_stop)
            except InterruptedError:  # stopped between two faces
                raise JobInterrupted() from None
            except Exception as exc:  # missing or broken weights: the generated image is worth keeping
                log.warning("face restoration failed: %s", exc)
                if warnings is not None:
                    warnings.append(f"Face restoration failed, the image is kept without it: {exc}")
        if inpaint is None:
            return image
        original = inpaint["originals"][index % len(inpaint["originals"])]
        mask = inpaint["soft_mask"]
        adaptive = inpaint.get("composite_masks")  # soft inpainting: keep generated pixels where they changed
        if inpaint["box"] is not None:
            x1, y1, x2, y2 = inpaint["box"]
            patch = image.resize((x2 - x1, y2 - y1), Image.LANCZOS)
            full = original.copy()
            full.paste(patch, (x1, y1))
            image = full
            if adaptive is not None:
                mask = Image.new("L", original.size, 0)
                mask.paste(adaptive[index].resize((x2 - x1, y2 - y1), Image.LANCZOS), (x1, y1))
        elif adaptive is not None:
            mask = adaptive[index]
        return imageprep.composite_original(image, original, mask)

    # ------------------------------------------------------------ SDXL and hires
    def _time_ids(self, model, width, height, batch) -> torch.Tensor | None:
        if model.family not in ("sdxl", "sdxl_refiner"):
            return None
        if model.family == "sdxl":
            ids = [height, width, 0, 0, height, width]
            neg = ids
        else:
            ids, neg = [height, width, 0, 0, 6.0], [height, width, 0, 0, 2.5]
        return torch.tensor([neg] * batch + [ids] * batch, dtype=torch.float32)

    def _stoppable_hires_pass(self, request, model, addons, plans, spec, schedule, latents, first: SamplingJob,
                              control, progress, seamless=None):
        """The hires pass, or the first pass's latents when the user stopped before it made any step.

        Returns (latents, infotext fields, how the run was stopped or None, the model to decode with).
        """
        try:
            out, fields, model_used = self._hires_pass(request, model, addons, plans, spec, schedule, latents, first,
                                                       control, progress, seamless)
        except JobInterrupted:  # stopped while upscaling between the passes
            return latents, {}, "interrupt", model
        if out is None:
            return latents, {}, first.stopped or "skip", model_used
        return out, fields, first.stopped, model_used

    def _hires_target(self, request) -> tuple[int, int]:
        if request.hr_resize_x or request.hr_resize_y:
            target_w = request.hr_resize_x or round(request.width * request.hr_resize_y / request.height)
            target_h = request.hr_resize_y or round(request.height * request.hr_resize_x / request.width)
        else:
            target_w, target_h = request.width * request.hr_scale, request.height * request.hr_scale
        return imageprep.round_to_multiple(int(target_w)), imageprep.round_to_multiple(int(target_h))

    def _hires_pass(self, request, model, addons, plans, spec, schedule, latents, first: SamplingJob, control,
                    progress, seamless=None):
        target_w, target_h = self._hires_target(request)
        upscaler = request.hr_upscaler or "Latent"
        factor = vae_ops.scale_factor(model.vae)
        if upscaler in LATENT_UPSCALE_MODES:
            mode, antialias = LATENT_UPSCALE_MODES[upscaler]
            kwargs = {"antialias": antialias} if mode in ("bilinear", "bicubic") else {}
            init_latents = torch.nn.functional.interpolate(latents, size=(target_h // factor, target_w // factor),
                                                           mode=mode, **kwargs)
            images = None
        else:
            images, _ = vae_ops.decode(model.vae, latents, tiling=self._tiling(model), control=control)
            images = [self._upscale(img, upscaler, target_w, target_h, control.interrupted) for img in images]
        steps = request.hr_second_pass_steps or request.steps
        # The second pass's own prompts, sampler, schedule type and checkpoint (A1111's hr_* fields).
        hr_plans = plans
        if request.hr_prompt or request.hr_negative_prompt:
            hr_request = dataclasses.replace(request, prompt=request.hr_prompt or request.prompt,
                                             negative_prompt=request.hr_negative_prompt or request.negative_prompt)
            hr_plans = prepare_prompts(hr_request, first.seeds, self.wildcards, self.styles)
        fields = {}
        hr_spec, hr_schedule = spec, schedule
        if request.hr_sampler_name or request.hr_scheduler:
            hr_spec, hr_schedule, _ = vocabulary.resolve(request.hr_sampler_name or spec.name,
                                                    request.hr_scheduler or schedule.label)
        if hr_spec.name != spec.name:
            fields["Hires sampler"] = hr_spec.name
        if request.hr_scheduler and hr_schedule.label != schedule.label:
            fields["Hires schedule type"] = hr_schedule.label
        current = self.models.current_checkpoint
        switch = bool(request.hr_checkpoint and current is not None and request.hr_checkpoint != current.title)
        if switch:
            model = self.models.ensure(request.hr_checkpoint)
            addons = self.models.addons()
            info = self.models.current_checkpoint
            fields["Hires checkpoint"] = f"{info.model_name} [{info.short_hash}]"  # A1111's short title
        vae_choice = request.vae or (self.options.get("sd_vae") if self.options is not None else None)
        if switch or hr_plans is not plans:  # the hires prompt's own LoRAs (the next batch sets its own again)
            addons.prepare([] if request.disable_extra_networks else hr_plans[0].loras, vae_choice)
            if seamless is not None:
                seamless.apply(model.unet, model.vae)
            self.models.refresh_placement()  # the job's VAE may have replaced the hires checkpoint's own
        if images is not None:  # encoded by the second pass's own VAE (hr_checkpoint may have switched it)
            init_latents = vae_ops.encode(model.vae, images, tiling=self._tiling(model), control=control)
        plan = self._sampling_plan(request, model, hr_spec, hr_schedule)
        # A1111 reschedules prompt editing for the second pass: "[a:b:0.5]" is b throughout it,
        # whole numbers count on from the first pass's steps, fractions above 1 address the second pass.
        hires_plans = [prompt.rescheduled(request.steps, steps) for prompt in hr_plans]
        positive_at, negative_at = encode_prompts(model, addons, hires_plans, request.clip_skip)
        job = SamplingJob(seeds=first.seeds, latent_size=(target_h // factor, target_w // factor), steps=steps,
                          cfg_scale=first.cfg_scale, positive_at=positive_at, negative_at=negative_at,
                          plan=plan, time_ids=self._time_ids(model, target_w, target_h, len(first.seeds)),
                          init_latents=init_latents, strength=float(request.denoising_strength), fixed_steps=True,
                          make_rng=first.make_rng, progress=progress, addons=first.addons)
        if first.controlnet is not None:  # the extension controls the hires pass too, its image resized
            units = first.controlnet.units
            if switch:  # the hires checkpoint's own copy (refused if it is of another family)
                units = [dataclasses.replace(u, model=self.models.controlnet(u.title)) for u in units]
            job.controlnet = ControlRun(units, target_w, target_h, execution_device(model.unet),
                                        next(model.unet.parameters()).dtype, hires=True)
        job.switch = self._refiner_switch(request, hires_plans, target_w, target_h, len(first.seeds), vae_choice,
                                          seamless)
        # A1111 draws the second pass's noise afresh from the same seeds and variation seeds (make_rng).
        out = denoise(model.unet, job, control, None)
        first.stopped = job.stopped
        if job.switch is not None and job.switch.done:
            model = job.switch.model
            fields.update(job.switch.infotext)
        fields = {"Denoising strength": request.denoising_strength, "Hires upscale": request.hr_scale
                  if not (request.hr_resize_x or request.hr_resize_y) else None,
                  "Hires resize": f"{target_w}x{target_h}" if (request.hr_resize_x or request.hr_resize_y) else None,
                  "Hires steps": request.hr_second_pass_steps or None, "Hires upscaler": upscaler, **fields}
        # Per image (A1111): the hires prompts when they differ from the first pass's.
        fields["Hires prompt"] = [h.prompt if h.prompt != p.prompt else None for h, p in zip(hr_plans, plans)]
        fields["Hires negative prompt"] = [h.negative_prompt if h.negative_prompt != p.negative_prompt else None
                                           for h, p in zip(hr_plans, plans)]
        return out, fields, model

    def _refiner_switch(self, request, plans, width, height, batch, vae_choice, seamless) -> ModelSwitch | None:
        """A1111's refiner for one sampling run: a ModelSwitch that brings ``refiner_checkpoint`` in part way.

        None without a refiner, or when it is the model already running (A1111 does not switch then).
        """
        current = self.models.current_checkpoint
        if not request.refiner_checkpoint or (current is not None and current.title == request.refiner_checkpoint):
            return None
        by_steps = bool(self.options.get("refiner_switch_by_sample_steps", False)) if self.options is not None \
            else False

        def load():
            model = self.models.ensure(request.refiner_checkpoint)
            addons = self.models.addons()
            addons.prepare([], vae_choice)  # the prompt's LoRAs are the base model's; not applied to the refiner
            if seamless is not None:
                seamless.apply(model.unet, model.vae)
            self.models.refresh_placement()  # the job's VAE may have replaced the refiner's own
            positive_at, negative_at = encode_prompts(model, addons, plans, request.clip_skip)
            info = self.models.current_checkpoint
            switch.model = model
            switch.infotext = {"Refiner": f"{info.model_name} [{info.short_hash}]",
                               "Refiner switch at": request.refiner_switch_at,
                               "Refiner switch by sampling steps": True if by_steps else None}
            return model.unet, positive_at, negative_at, self._time_ids(model, width, height, batch)

        switch = ModelSwitch(float(request.refiner_switch_at), load, by_steps=by_steps)
        return switch

    def _tiling(self, model) -> vae_ops.Tiling:
        """How the VAE works on big images: the tiling options, the job's memory plan, and tiles whenever free
        memory is short."""
        device = execution_device(model.vae)
        plan = self.models.current_plan
        return vae_ops.tiling_from_options(self.options, lambda: free_memory_bytes(device),
                                           planned=plan is not None and plan.vae_tiled)

    def _compiled_unet(self, memory, result: GenerationResult):
        """The torch.compile dispatcher, started for this job, when the option torch_compile is on; else None."""
        wanted = bool(self.options.get("torch_compile", False)) if self.options is not None else False
        try:
            compiled = self.models.compiled_unet(wanted)
        except ValueError as exc:
            result.notes.append(f"torch.compile is not used: {exc}")
            return None
        if wanted and compiled is None:
            result.notes.append(f"torch.compile is not used while the weights are offloaded ({memory.offload})")
        if compiled is not None:
            compiled.start_job()
        return compiled

    def _forced_offload(self) -> str | None:
        """The offload mode the option memory_offload forces, or None for the planner's choice."""
        choice = self.options.get("memory_offload", "Automatic") if self.options is not None else "Automatic"
        return vocabulary.MEMORY_OFFLOAD_CHOICES.get(choice)

    def _footprint(self, request, model) -> JobFootprint:
        """What the request's largest pass costs in memory, for the planner."""
        width, height = request.width, request.height
        if request.enable_hr and request.init_image is None:
            width, height = self._hires_target(request)
        found = find_controlnet_args(request.alwayson_scripts)
        units = [u for u in (found[1] if found else []) if isinstance(u, dict) and u.get("enabled", True)
                 and str(u.get("model") or "None") != "None"]
        tiling = vae_ops.tiling_from_options(self.options)
        return JobFootprint(
            width=width, height=height, batch_size=request.batch_size,
            unet_channels=model.unet.config.block_out_channels[0],
            vae_channels=model.vae.config.block_out_channels[0],
            element_size=next(model.unet.parameters()).element_size(),
            vae_element_size=next(model.vae.parameters()).element_size(),
            latent_factor=vae_ops.scale_factor(model.vae), controlnets=len(units),
            vae_tiling=tiling.min_pixels > 0, vae_tile_size=tiling.tile_size,
            vae_tiles_by_size=tiling.applies(height, width),
            vae_bytes_factor=vae_ops.UNTILED_BYTES_FACTOR)

    def _live_preview(self, model, warnings: list[str]):
        """latents -> preview picture by the option ``show_progress_type`` (A1111's live preview method)."""
        kind = self.options.get("show_progress_type", "Approx cheap") if self.options is not None else "Approx cheap"
        if kind == "Full":
            return lambda lat: vae_ops.decode(model.vae, lat[:1])[0][0]
        if kind == "TAESD":
            decoder = self.models.preview_decoder()
            if decoder is None:
                warnings.append("TAESD live previews need a decoder in models/VAE-approx (taesd_decoder.pth, "
                                "taesdxl_decoder.pth, or one named after the checkpoint): showing Approx cheap")
            elif not self._decoder_fits(model, decoder):
                warnings.append("the TAESD decoder in models/VAE-approx does not match this model's VAE (its "
                                "colours are off): showing Approx cheap")
            else:
                return lambda lat: latent_preview.decoder_preview(lat, decoder)
        factors = self._preview_factors(model)
        return lambda lat: latent_preview.cheap_preview(lat, factors)

    def _decoder_fits(self, model, decoder) -> bool:
        """Whether a learned preview decoder draws this VAE's latents in their colours (checked once per pair)."""
        fits = self._decoder_fit_by_vae.setdefault(model.vae, weakref.WeakKeyDictionary())
        if decoder not in fits:
            fits[decoder] = latent_preview.decoder_matches(decoder, model.vae, vae_ops.encode, vae_ops.decode)
        return fits[decoder]

    def _preview_factors(self, model):
        """The live preview's latent -> RGB map for this model's VAE, worked out once per loaded VAE."""
        factors = self._factors_by_vae.get(model.vae)
        if factors is None:
            factors = latent_preview.preview_factors(model.vae, model.family, vae_ops.encode)
            self._factors_by_vae[model.vae] = factors
        return factors

    def _upscale(self, image: Image.Image, name: str, width: int, height: int, should_stop=None) -> Image.Image:
        if name in ("Lanczos", "None", "") or self.upscalers is None:
            return image.resize((width, height), Image.LANCZOS)
        if name == "Nearest":
            return image.resize((width, height), Image.NEAREST)
        try:
            scaled = self.upscalers.upscale(image, name, width / image.width, should_stop=should_stop)
        except InterruptedError:  # stopped between two tiles
            raise JobInterrupted() from None
        return scaled.resize((width, height), Image.LANCZOS) if scaled.size != (width, height) else scaled

    # ------------------------------------------------------------ sampling
    def _sampler_settings(self, request) -> SamplerSettings:
        """Options, then this job's override_settings, then the request's own fields (eta, s_churn, ...)."""
        values = {key: self.options.get(key, default) for key, default in OPTION_DEFAULTS.items()} \
            if self.options is not None else {}
        values.update({k: v for k, v in request.sampler_overrides.items() if k in OPTION_DEFAULTS})
        for name in ("eta", "s_churn", "s_tmin", "s_tmax", "s_noise", "s_min_uncond"):
            if getattr(request, name) is not None:
                values[name] = getattr(request, name)
        try:
            return SamplerSettings.from_mapping(values)
        except ValueError as exc:
            raise InvalidRequest(f"bad sampler setting: {exc}", field="override_settings") from None

    def _sampling_plan(self, request, model, spec, schedule) -> Plan:
        """The sampler, schedule type and settings over this model's own noise schedule."""
        config = model.scheduler_config
        alphas_cumprod = alphas_cumprod_from_config(config)
        infotext = {}
        if config.get("rescale_betas_zero_snr"):
            alphas_cumprod = rescale_zero_terminal_snr(alphas_cumprod)
            infotext["Noise Schedule"] = "Zero Terminal SNR"
        prediction = config.get("prediction_type", "epsilon")
        if prediction == "v_prediction" and model.family.startswith("sdxl"):
            infotext["Prediction"] = "v-prediction"
        return Plan(spec, schedule, self._sampler_settings(request), alphas_cumprod, prediction,
                    is_sdxl=model.family.startswith("sdxl"), infotext=infotext)

    @staticmethod
    def _with_sampling_fields(fields: dict, plan: Plan) -> dict:
        """A1111's sampler infotext (resolved schedule type, Eta, NGMS, ...) before the Version field."""
        version = fields.pop("Version", None)
        fields.update(plan.infotext)
        fields["Version"] = version
        return fields

    # ------------------------------------------------------------ guidance add-ons
    @staticmethod
    def _guidance_addons(request, result: GenerationResult) -> dict:
        """The request's enabled add-ons that apply to its mode; warnings for the rest."""
        active, warnings = resolve_addons(request.addons, request.alwayson_scripts)
        for key in list(active):
            spec = find_addon(key)
            if request.mode not in spec.modes:
                warnings.append(f"{spec.title} applies to {' and '.join(spec.modes)} only; ignored")
                del active[key]
        result.warnings.extend(warnings)
        return active

    # ------------------------------------------------------------ ControlNet
    def _controlnet_run(self, request, model, width, height, seeds, result: GenerationResult,
                        crop: tuple | None = None) -> ControlRun | None:
        """The request's enabled ControlNet units, loaded and preprocessed for a pass of width x height
        (``crop``: the inpainting "Only masked" box and the whole picture's size)."""
        found = find_controlnet_args(request.alwayson_scripts)
        if found is None:
            return None
        units, warnings = parse_units(found[1], _image_from_payload)
        prepared = []
        for index, unit in enumerate(units):
            where = f"alwayson_scripts.controlnet.args[{index}]"
            if not unit.enabled:
                continue
            if not unit.active:
                warnings.append(f"ControlNet unit {index}: no model chosen; ignored")
                continue
            unit = with_mask_as_input(unit)  # strokes drawn on the unit's canvas are its control image
            image = unit.image if unit.image is not None else request.init_image
            if image is None:
                raise InvalidRequest(f"ControlNet unit {index} has no image", field=f"{where}.image")
            try:
                info = self.catalog.find_controlnet(unit.model)
            except NotFound as exc:
                raise InvalidRequest(str(exc), field=f"{where}.model") from None
            net = self.models.controlnet(info.title)
            strides = 8 if is_adapter(net) else 2 ** (len(net.config.conditioning_embedding_out_channels) - 1)
            if strides != vae_ops.scale_factor(model.vae):  # its hint would not land on the latent grid
                raise InvalidRequest(f"ControlNet {info.title} reads its image at 1/{strides} of the pixels, this "
                                     f"checkpoint's latents are 1/{vae_ops.scale_factor(model.vae)}: it is made "
                                     "for another model", field=f"{where}.model")
            unit = dataclasses.replace(unit, image=image)
            prepared.append(prepare_unit(unit, net, info.title, width, height, self.models.run_annotator, seeds[0]))
        result.warnings.extend(warnings)
        if not prepared:
            return None
        return ControlRun(prepared, width, height, execution_device(model.unet), next(model.unet.parameters()).dtype,
                          crop)

    # ------------------------------------------------------------ infotext and saving
    def _infotext_fields(self, request, seed, plan, checkpoint, report, size, hires_fields, img2img,
                         subseed, ti_hashes=None) -> dict:
        fields = {
            "Steps": request.steps, "Sampler": request.sampler_name, "Schedule type": request.scheduler,
            "CFG scale": request.cfg_scale, "Seed": seed, "Size": f"{request.width}x{request.height}",  # first pass, as A1111
            "Model hash": checkpoint.short_hash, "Model": checkpoint.model_name,
            "VAE hash": report.vae_hash, "VAE": report.vae_name,
            "Variation seed": subseed if request.subseed_strength else None,
            "Variation seed strength": request.subseed_strength or None,
            "Seed resize from": f"{request.seed_resize_from_w}x{request.seed_resize_from_h}"
            if request.seed_resize_from_w > 0 and request.seed_resize_from_h > 0 else None,
            "Denoising strength": request.denoising_strength if img2img else None,
            "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
            "ENSD": request.eta_noise_seed_delta
            if request.eta_noise_seed_delta and sampler_uses_ensd(request.sampler_name) else None,
            "RNG": request.randn_source if request.randn_source != "GPU" else None,
            "Face restoration": request.face_restorer if request.restore_faces else None,
            "Tiling": True if request.tiling else None,
            "Noise multiplier": request.initial_noise_multiplier
            if img2img and request.initial_noise_multiplier != 1.0 else None,
        }
        if request.mask is not None:
            fields.update({
                "Mask blur": _mask_blur_label(request),
                "Inpaint area": "Only masked" if request.inpaint_full_res else None,
                "Masked area padding": request.inpaint_full_res_padding if request.inpaint_full_res else None,
                "Masked content": MASKED_CONTENT[request.inpainting_fill],
                "Mask mode": "Inpaint not masked" if request.inpainting_mask_invert else None,
            })
        fields.update(hires_fields)
        if report.lora_hashes:
            fields["Lora hashes"] = ", ".join(f"{k}: {v}" for k, v in report.lora_hashes.items())
        if ti_hashes:
            fields["TI hashes"] = ", ".join(f"{k}: {v}" for k, v in ti_hashes.items())
        if plan.template:
            fields["Template"] = plan.template
        if plan.negative_template:
            fields["Negative Template"] = plan.negative_template
        fields["Version"] = VERSION
        return fields

    def _saver(self, request, tab: str):
        """The JobSaver for one job: the saving options with the job's overrides, under --outdir."""
        from webui.saving import JobSaver, effective_options

        opts = effective_options(self.options, getattr(request, "override_settings", None))
        return JobSaver(self.settings.outdir, tab, opts, enabled=bool(request.save_images and self.settings.save_images))

    def _name_context(self, request, seed, plan, checkpoint, report, saving, index):
        """What the file name pattern tags of one image read (A1111's FilenameGenerator inputs)."""
        from webui.filename_patterns import NameContext

        all_seeds, iteration = (saving[1], saving[2]) if saving else ([seed], 0)
        styles = [self.styles.get(name) for name in request.styles] if self.styles is not None else []
        img2img = request.init_image is not None
        return NameContext(
            seed=seed, all_seeds=list(all_seeds), prompt=plan.prompt,
            negative_prompt=plan.negative_prompt, styles=list(request.styles),
            style_prompts=[style.prompt for style in styles if style is not None], steps=request.steps,
            cfg_scale=request.cfg_scale, sampler_name=request.sampler_name, scheduler=request.scheduler,
            model_hash=checkpoint.short_hash, model_name=checkpoint.model_name, vae_filename=report.vae_name,
            denoising_strength=request.denoising_strength if img2img or request.enable_hr else None,
            clip_skip=request.clip_skip, batch_size=request.batch_size, n_iter=request.n_iter, batch_index=index,
            iteration=iteration)

    def _emit(self, request, image, plan, seed, subseed, fields, result: GenerationResult, saver=None,
              context=None) -> None:
        from webui.filename_patterns import NameContext
        from webui.infotext import format_infotext

        text = format_infotext(plan.prompt, plan.negative_prompt, fields)
        result.images.append(image)
        result.infotexts.append(text)
        result.seeds.append(seed)
        result.subseeds.append(subseed)
        result.prompts.append(plan.prompt)
        result.negative_prompts.append(plan.negative_prompt)
        if not result.parameters:
            result.parameters = {k: v for k, v in fields.items() if v is not None}
        if saver is None:
            saver = self._saver(request, "img2img" if request.init_image is not None else "txt2img")
        path = saver.save(image, text, context or NameContext(seed=seed, prompt=plan.prompt))
        if path is not None:
            result.saved_paths.append(str(path))

    # ------------------------------------------------------------ ControlNet preprocessors on their own
    def detect(self, request: DetectRequest, control: JobControl | None = None) -> DetectResult:
        """Each image through the request's ControlNet preprocessor (network ones with the worker's annotators)."""
        from webui.controlnet.preprocessors import run_module

        control = control or NullControl()
        check_request_limits(request)
        result = DetectResult()
        for image in request.images:
            if control.interrupted():
                raise JobInterrupted("preprocessing interrupted")
            result.images.append(run_module(request.module, image, request.processor_res, request.threshold_a,
                                            request.threshold_b, network=self.models.run_annotator))
        return result

    # ------------------------------------------------------------ extras
    def extras(self, request: ExtrasRequest, control: JobControl | None = None) -> ExtrasResult:
        """Upscale and restore faces on each image; saves them under extras-images."""
        from webui.filename_patterns import NameContext
        from webui.infotext import format_parameters
        from webui.postprocess.extras import run_extras

        if request.override_settings and not isinstance(self.options, JobOptions):
            return self.for_job(request.override_settings).extras(request, control)
        control = control or NullControl()
        if not request.images:
            raise InvalidRequest("no image given", field="image")
        outputs = run_extras(request, self.upscalers, self.faces, control)
        result = ExtrasResult()
        saver = self._saver(request, "extras")
        for index, (image, info) in enumerate(outputs):
            text = format_parameters(info)
            # As A1111: the image keeps its own infotext ("parameters") and gains a "postprocessing"
            # chunk; the saved file names the same text "extras" too.
            source = read_infotext(request.images[index]) if index < len(request.images) else None
            result.images.append(image)
            result.infotexts.append(text)
            result.source_infotexts.append(source or "")
            path = saver.save(image, source, NameContext(), chunks={"postprocessing": text, "extras": text})
            if path is not None:
                result.saved_paths.append(str(path))
        return result


def _mask_blur_xy(request) -> tuple[int, int]:
    """The mask blur across and down: ``mask_blur_x``/``mask_blur_y`` where given, else ``mask_blur``."""
    return (request.mask_blur if request.mask_blur_x is None else request.mask_blur_x,
            request.mask_blur if request.mask_blur_y is None else request.mask_blur_y)


def _mask_blur_label(request) -> int | None:
    """A1111's "Mask blur" infotext: the blur when both directions agree, else nothing."""
    blur_x, blur_y = _mask_blur_xy(request)
    return blur_x if blur_x == blur_y else None
