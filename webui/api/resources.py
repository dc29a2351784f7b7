"""Routes that list and manage what the server has: models, options, samplers, upscalers... (A1111 shapes)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Request
from starlette.concurrency import run_in_threadpool

from webui import vocabulary
from webui.addons import registry as addons
from webui.api.convert import check_api_option_changes, resolve_checkpoint
from webui.api.jobs_bridge import await_job, caller_of
from webui.schemas import MODEL_JOB_KIND, ModelAction
from webui.scripts import registry as selectable_scripts
from webui.schemas import InvalidRequest

# The sampler options A1111's /samplers shows (ours carry a few private ones too).
A1111_SAMPLER_OPTIONS = ("scheduler", "second_order", "brownian_noise", "solver_type", "discard_next_to_last_sigma",
                         "uses_ensd")


def _sd_model_item(info) -> dict:
    return {"title": info.title, "model_name": info.model_name, "hash": info.short_hash, "sha256": info.sha256,
            "filename": str(info.path), "config": None}


def _styles(database) -> list[dict]:
    if database is None:
        return []
    items = []
    for name in database.names():
        style = database.get(name)
        items.append({"name": style.name, "prompt": style.prompt, "negative_prompt": style.negative_prompt})
    return items


def _embedding_item(path: Path) -> dict:
    """A1111's EmbeddingItem; vector count and width come from a safetensors header when there is one."""
    item = {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 0, "vectors": 0}
    if path.suffix.lower() == ".safetensors":
        try:
            from webui.detection.safetensors_header import read_safetensors_header

            shapes = read_safetensors_header(path).shapes
        except (OSError, ValueError):
            return item
        two_d = [s for s in shapes.values() if len(s) == 2]
        if two_d:
            item["vectors"], item["shape"] = int(two_d[0][0]), int(two_d[0][1])
    return item


def _installed_embeddings(models) -> dict | None:
    """A1111's embeddings answer from what the loaded model installed; None before any job used it.

    Read from the manager's published snapshot: this never waits for a running job.
    """
    snapshot = getattr(models, "snapshot", None)
    status = snapshot().embeddings if callable(snapshot) else None
    if status is None:
        return None
    widths = getattr(status, "widths", {}) or {}

    def item(name, vectors, reason=None):
        entry = {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                 "shape": int(widths.get(name, 0)), "vectors": int(vectors)}
        if reason:
            entry["reason"] = str(reason)
        return entry

    return {"loaded": {name: item(name, count) for name, count in status.loaded.items()},
            "skipped": {name: item(name, 0, reason) for name, reason in status.skipped.items()}}


def _memory() -> dict:
    try:
        import psutil

        process = psutil.Process(os.getpid())
        rss = process.memory_info().rss
        total = psutil.virtual_memory().total
        ram = {"free": total - rss, "used": rss, "total": total}
    except Exception as exc:  # psutil is optional
        ram = {"error": str(exc)}
    cuda: dict[str, Any] = {"error": "unavailable"}
    try:
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            stats = torch.cuda.memory_stats()

            def pair(name):
                return {"current": stats.get(f"{name}.all.current", 0), "peak": stats.get(f"{name}.all.peak", 0)}

            cuda = {
                "system": {"free": free, "used": total - free, "total": total},
                "active": pair("active_bytes"), "allocated": pair("allocated_bytes"),
                "reserved": pair("reserved_bytes"), "inactive": pair("inactive_split_bytes"),
                "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
            }
    except Exception as exc:
        cuda = {"error": str(exc)}
    return {"ram": ram, "cuda": cuda}


def create_resources_router(services) -> APIRouter:
    """sd-models, options, samplers, schedulers, upscalers, loras, sd-vae, embeddings, styles and the rest."""
    router = APIRouter(prefix="/sdapi/v1", tags=["resources"])
    catalog = services.catalog

    def current_title() -> str | None:
        current = getattr(services.models, "current_checkpoint", None)
        return current.title if current is not None else None

    # ---- checkpoints
    @router.get("/sd-models")
    def sd_models():
        """Checkpoints in the catalog (A1111's SDModelItem list)."""
        return [_sd_model_item(info) for info in catalog.checkpoints()]

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints():
        """Rescan the checkpoint folders."""
        catalog.refresh_checkpoints()
        return None

    # Only the worker touches weights: a switch, unload or reload is a queued job, run after the jobs
    # queued before it and before those queued after it; the request awaits it without holding a thread.
    async def model_job(http: Request, action: ModelAction) -> dict:
        return await await_job(services.queue, MODEL_JOB_KIND, action, caller_of(http).owner) or {}

    @router.post("/unload-checkpoint")
    async def unload_checkpoint(http: Request):
        """Free the loaded checkpoint from RAM and GPU (after the jobs queued before this request)."""
        await model_job(http, ModelAction("unload"))
        return {}

    @router.post("/reload-checkpoint")
    async def reload_checkpoint(http: Request):
        """Load the current checkpoint again (after the jobs queued before this request)."""
        await model_job(http, ModelAction("reload"))
        return {}

    # ---- options
    @router.get("/options")
    def get_options():
        """A1111 options; ``sd_model_checkpoint`` is the loaded checkpoint's title when one is loaded."""
        values = services.options.as_dict()
        current = getattr(services.models, "current_checkpoint", None)
        if current is not None:
            values["sd_model_checkpoint"] = current.title
            values["sd_checkpoint_hash"] = current.sha256
        return values

    @router.post("/options")
    async def set_options(http: Request, changes: dict[str, Any] = Body(...)):
        """Change options; ``sd_model_checkpoint`` loads that checkpoint (404 when unknown) as a queued job.

        The switch happens after the jobs queued before it and before those queued
        after it; the answer comes once it is done, as in A1111. Keys this server
        does not have are ignored, as A1111 does, and named under ``warnings``; a
        known key with a value of the wrong type is a 422 naming it, and then
        nothing changes.
        """
        def check():
            known = services.options.as_dict()
            wanted = {k: v for k, v in changes.items() if k in known}
            ignored = sorted(k for k in changes if k not in known)
            checkpoint = wanted.pop("sd_model_checkpoint", None)
            if checkpoint is not None and not isinstance(checkpoint, str):
                raise InvalidRequest("sd_model_checkpoint must be a string", field="sd_model_checkpoint")
            check_api_option_changes(wanted, services)
            # Type-check the rest before the (slow) model switch so a bad value changes nothing.
            trial = type(services.options)(defaults=known)
            trial.update(wanted)
            return wanted, ignored, resolve_checkpoint(catalog, checkpoint) if checkpoint else None

        wanted, ignored, title = await run_in_threadpool(check)
        if title:
            loaded = await model_job(http, ModelAction("load", title))
            wanted["sd_model_checkpoint"] = loaded.get("checkpoint") or current_title() or title
        updated = await run_in_threadpool(services.options.update, wanted)
        warnings = [f"{key}: not an option this server has; ignored" for key in ignored]
        return {"updated": updated, "ignored": ignored, "warnings": warnings}

    @router.get("/cmd-flags")
    def cmd_flags():
        """The server's start-up settings under A1111's flag names (a subset)."""
        s = services.settings
        return {
            "port": s.port, "listen": s.host not in ("127.0.0.1", "localhost", "::1"), "server_name": s.host,
            "models_dir": str(s.models_dir), "ckpt_dir": str(s.extra_ckpt_dirs[0]) if s.extra_ckpt_dirs else None,
            "lora_dir": str(s.extra_lora_dirs[0]) if s.extra_lora_dirs else None, "outdir": str(s.outdir),
            "device": s.device, "precision": s.precision, "api": True, "nowebui": False,
        }

    # ---- samplers and friends
    @router.get("/samplers")
    def samplers():
        """Sampler names the engine accepts (A1111's SamplerItem list)."""
        items = []
        for name in services.engine.sampler_names():
            spec = vocabulary.find_sampler(name)
            options = {k: str(v) for k, v in (spec.options if spec else {}).items() if k in A1111_SAMPLER_OPTIONS}
            items.append({"name": name, "aliases": list(spec.aliases) if spec else [], "options": options})
        return items

    @router.get("/schedulers")
    def schedulers():
        """Schedule types (A1111's SchedulerItem list)."""
        items = []
        for label in services.engine.scheduler_names():
            spec = vocabulary.find_schedule(label)
            if spec is None:
                continue
            items.append({"name": spec.name, "label": spec.label, "aliases": list(spec.aliases) or None,
                          "default_rho": spec.default_rho, "need_inner_model": spec.need_inner_model})
        return items

    @router.get("/upscalers")
    def upscalers():
        """Upscalers: None, Lanczos, Nearest and every recognised model (A1111's UpscalerItem list)."""
        registry = services.upscalers
        if registry is None:
            return [{"name": n, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
                    for n in vocabulary.BUILTIN_UPSCALERS]
        # As A1111: model_name is the model file's name (its stem), model_path the file.
        return [{"name": u.name, "model_name": u.path.stem if u.path else None,
                 "model_path": str(u.path) if u.path else None, "model_url": None, "scale": u.scale}
                for u in registry.list()]

    @router.get("/latent-upscale-modes")
    def latent_upscale_modes():
        """Hires fix's latent modes."""
        modes = getattr(services.engine, "latent_upscale_modes", None)
        names = modes() if callable(modes) else tuple(vocabulary.LATENT_UPSCALE_MODES)
        return [{"name": n} for n in names]

    @router.get("/face-restorers")
    def face_restorers():
        """Face restorers whose weights are present (A1111's FaceRestorerItem list)."""
        faces = services.faces
        if faces is None:
            return []
        items = []
        for name in faces.names():
            try:
                folder = str(faces.model_path(name).parent)
            except Exception:
                folder = None
            items.append({"name": name, "cmd_dir": folder})
        return items

    @router.get("/realesrgan-models")
    def realesrgan_models():
        """The upscaler models of the ESRGAN family (A1111's RealesrganItem list)."""
        registry = services.upscalers
        if registry is None:
            return []
        return [{"name": u.name, "path": str(u.path), "scale": u.scale} for u in registry.list()
                if u.path is not None and (u.architecture or "").upper() in ("ESRGAN", "REALESRGAN", "SPAN", "COMPACT")]

    @router.get("/hypernetworks")
    def hypernetworks():
        """Hypernetworks are not supported: always empty."""
        return []

    # ---- LoRA, VAE, embeddings
    @router.get("/loras")
    def loras():
        """LoRA files with their training metadata (A1111's Lora extension shape)."""
        return [{"name": info.name, "alias": info.alias, "path": str(info.path), "metadata": info.metadata}
                for info in catalog.loras()]

    @router.post("/refresh-loras")
    def refresh_loras():
        """Rescan the LoRA folders."""
        catalog.refresh_loras()
        return None

    @router.get("/sd-vae")
    def sd_vae():
        """VAE files in models/VAE (A1111's SDVaeItem list)."""
        return [{"model_name": info.name, "filename": str(info.path)} for info in catalog.vaes()]

    @router.post("/refresh-vae")
    def refresh_vae():
        """Rescan models/VAE."""
        catalog.refresh_vaes()
        return None

    @router.get("/embeddings")
    def embeddings():
        """Textual-inversion embeddings: loaded (fit the current model) and skipped."""
        status = services.extra.get("embeddings_status")
        if callable(status):
            status = status()
        if isinstance(status, dict) and "loaded" in status:
            return {"loaded": status.get("loaded") or {}, "skipped": status.get("skipped") or {}}
        installed = _installed_embeddings(services.models)
        if installed is not None:
            return installed
        return {"loaded": {info.stem: _embedding_item(info.path) for info in catalog.embeddings()}, "skipped": {}}

    @router.post("/refresh-embeddings")
    def refresh_embeddings():
        """Rescan models/embeddings."""
        catalog.refresh_embeddings()
        return None

    # ---- styles, scripts, memory
    @router.get("/prompt-styles")
    def prompt_styles():
        """Styles from styles.csv (A1111's PromptStyleItem list)."""
        return _styles(services.styles)

    router.add_api_route("/styles", prompt_styles, methods=["GET"], summary="Styles (alias of prompt-styles)")

    @router.get("/scripts")
    def scripts():
        """Selectable scripts (``script_name``) and always-on ones (add-ons) by A1111's lower-case titles."""
        return {"txt2img": selectable_scripts.script_titles(False) + addons.script_titles(False),
                "img2img": selectable_scripts.script_titles(True) + addons.script_titles(True)}

    @router.get("/script-info")
    def script_info():
        """Each script's and add-on's args in positional order with their UI defaults, as A1111 lists them."""
        return selectable_scripts.script_info() + addons.script_info()

    @router.get("/extensions")
    def extensions():
        return []

    @router.get("/memory")
    def memory():
        """RAM of this process and CUDA memory figures when a GPU is present."""
        return _memory()

    return router
