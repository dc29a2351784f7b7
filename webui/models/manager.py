"""ModelManager: the only owner of loaded weights.

One checkpoint is live on the compute device. A RAM cache keeps the converted
state dicts of the N most recently used checkpoints (A1111's
``sd_checkpoints_limit``; 1 = no cache), so switching back does not read the file
again. Switching frees the old model completely (references dropped, CUDA cache
emptied, freed heap returned to the OS) before the new one is built.
"""
from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from webui.catalog import Catalog, CheckpointInfo
from webui.config import Settings
from webui.devices import empty_cache, free_memory_bytes
from webui.models.diffusers_folder import read_diffusers_folder
from webui.models.loader import LoadedComponents, build_components, prepare_components, read_state_dict
from webui.models.memory_plan import JobFootprint, MemoryBudget, MemoryPlan, ModelBytes, plan_memory
from webui.models.placement import HOME, Placement, largest_child_bytes, module_bytes
from webui.schemas import ModelLoadError, NotFound

log = logging.getLogger(__name__)


def release_memory(device: str) -> None:
    """Collect garbage, empty the GPU allocator's cache and hand freed heap pages back to the OS."""
    gc.collect()
    empty_cache(device)
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class ModelSnapshot:
    """What the manager holds, published for readers on other threads (read without any lock).

    ``embeddings`` is the live model's embedding status (``loaded``/``skipped``/``widths``),
    None until a job installed the embeddings.
    """

    checkpoint: CheckpointInfo | None = None
    embeddings: object | None = None


@dataclass
class _Prepared:
    """A cache entry: converted tensors, or on CPU the built modules themselves."""

    architecture: object
    converted: dict | None
    inpainting: bool
    components: LoadedComponents | None = None


class ModelHolder(Protocol):
    """Anything else that keeps model weights (upscalers, face restorers and their detector, ControlNets)."""

    def unload(self) -> None:
        """Drop every model held; the next use loads again."""


class ModelManager:
    """Loads, caches, switches and unloads checkpoints; applies per-job LoRAs, embeddings and VAEs."""

    def __init__(self, settings: Settings, catalog: Catalog, checkpoints_limit: int | None = None):
        self.settings = settings
        self.catalog = catalog
        choice = settings.device_choice()
        self.device = choice.device
        self.dtype = choice.torch_dtype()
        self.vae_dtype = choice.torch_vae_dtype()
        self._channels_last = choice.channels_last
        self._limit = max(1, checkpoints_limit or settings.checkpoints_limit)
        self._lock = threading.RLock()
        self._cache: OrderedDict[str, _Prepared] = OrderedDict()
        self._loaded: LoadedComponents | None = None
        self._current: CheckpointInfo | None = None
        self._addons = None  # per-model LoRA/embedding/VAE state (webui.models.addons.ModelAddons)
        self._controlnets = None  # loaded ControlNets (webui.models.controlnet.ControlNetCache), made on first use
        self._annotators = None  # loaded ControlNet annotators (webui.models.annotators.AnnotatorCache), idem
        self._preview_decoders = None  # learned live-preview decoders (webui.models.preview_decoder), idem
        self._holders: dict[str, ModelHolder] = {}  # upscalers, face restorers, ControlNets...: see register()
        self._placement = Placement(self.device)  # where the live checkpoint's weights are (webui.models.placement)
        self._offload = "none"  # the offload mode of the last plan: a checkpoint loaded next starts in it
        self._plan: MemoryPlan | None = None  # the running job's plan
        self._compiled = None  # the live UNet's torch.compile dispatcher (webui.models.compiled), when asked for
        self.load_count = 0  # how many times a file was read (tests and benchmarks look at this)
        self.last_load_seconds = 0.0

    # ---- what is loaded
    @property
    def current_checkpoint(self) -> CheckpointInfo | None:
        return self._current

    def snapshot(self) -> ModelSnapshot:
        """The published state: never waits for the model lock, so a request thread never waits for a job.

        It is assembled from references the worker replaces whole (never mutates), so it is consistent
        enough for listings even while a job runs or a switch is under way.
        """
        addons = self._addons
        return ModelSnapshot(checkpoint=self._current,
                             embeddings=getattr(addons, "embedding_status", None) if addons is not None else None)

    @property
    def loaded(self) -> LoadedComponents | None:
        return self._loaded

    @property
    def lock(self) -> threading.RLock:
        """Held by the engine for a whole job so no switch happens mid-generation."""
        return self._lock

    def cached_checkpoints(self) -> list[str]:
        with self._lock:
            return list(self._cache)

    def set_cache_limit(self, limit: int) -> None:
        with self._lock:
            self._limit = max(1, int(limit))
            self._trim_cache()
            release_memory(self.device)

    # ---- the other models under the same memory policy
    def register(self, name: str, holder: ModelHolder) -> None:
        """Put another kind of model under this manager's memory policy (call once at wiring).

        The policy: free before load (every registered holder is unloaded before a
        checkpoint is read from disk) and everything freed after an out-of-memory error.
        A holder frees its previous model before loading the next one itself.
        """
        with self._lock:
            self._holders[name] = holder

    def holders(self) -> dict[str, ModelHolder]:
        """The registered holders by name."""
        return dict(self._holders)

    def _unload_holders(self) -> None:
        for name, holder in list(self._holders.items()):
            try:
                holder.unload()
            except Exception:  # one holder's trouble must not keep the others' memory
                log.exception("could not unload %s", name)

    # ---- switching
    def select_checkpoint(self, name: str) -> CheckpointInfo:
        """Make ``name`` (title, file name or hash) the live checkpoint, loading it if needed."""
        info = self.catalog.find_checkpoint(name)
        self.ensure(info)
        return info

    def ensure(self, info: CheckpointInfo | str | None = None) -> LoadedComponents:
        """The live components of ``info`` (default: the current or the catalog's default checkpoint)."""
        with self._lock:
            if isinstance(info, str):
                info = self.catalog.find_checkpoint(info)
            if info is None:
                info = self._current or self.catalog.default_checkpoint()
                if info is None:
                    raise NotFound("no checkpoint found: put a .safetensors or .ckpt file in models/Stable-diffusion")
            if self._loaded is not None and self._current is not None and self._current.sha256 == info.sha256:
                return self._loaded
            if not info.path.exists():
                raise ModelLoadError(f"checkpoint file {info.name} is no longer on disk; press refresh")
            self._unload_live()
            start = time.perf_counter()
            prepared = self._prepared(info)
            if prepared.components is not None:
                self._loaded = prepared.components
                # Placed again like a new build: taking the last checkpoint off took this mode's hooks away.
                self._placement.apply(self._loaded, self._offload_for_load(self._loaded))
            else:
                # Built in RAM first: whether the weights go to the device whole depends on their size.
                self._loaded = build_components(prepared.architecture, prepared.converted, prepared.inpainting,
                                                HOME, self.dtype, place=self._place_new)
                if self.device == "cpu" and self._limit > 1:
                    # On CPU the modules can be the cache entry: switching back is a swap of references.
                    # (Per-job LoRAs, embeddings and VAEs are undone before a switch, so they stay clean.)
                    prepared.components, prepared.converted = self._loaded, None
            self._current = info
            if self._limit <= 1:
                self._cache.clear()
            self.last_load_seconds = time.perf_counter() - start
            log.info("checkpoint %s ready in %.2fs", info.title, self.last_load_seconds)
            return self._loaded

    def _place_new(self, components: LoadedComponents) -> None:
        if self.vae_dtype != self.dtype:
            components.vae.to(self.vae_dtype)
        if self._channels_last:
            components.unet.to(memory_format=torch.channels_last)
            components.vae.to(memory_format=torch.channels_last)
        self._placement.apply(components, self._offload_for_load(components))

    def _offload_for_load(self, components: LoadedComponents) -> str:
        """The offload mode a checkpoint is loaded in: the last plan's, or model offload when its weights alone
        would not fit on the device (the first job's plan then decides)."""
        if self.device == "cpu" or self._offload != "none":
            return self._offload
        weights = sum(module_bytes(module) for module in components.modules())
        free = free_memory_bytes(self.device) + self._bytes_on_device()
        if weights * 1.15 > free:
            log.info("the weights (%.1f GiB) do not fit in %.1f GiB free: loaded with model offload",
                     weights / 2 ** 30, free / 2 ** 30)
            return "model"
        return "none"

    def _prepared(self, info: CheckpointInfo) -> _Prepared:
        cached = self._cache.get(info.sha256)
        if cached is not None:
            self._cache.move_to_end(info.sha256)
            return cached
        self.load_count += 1
        self._unload_holders()  # free before load: the checkpoint read next is the biggest thing
        release_memory(self.device)
        if info.path.is_dir():
            arch, converted, inpainting = read_diffusers_folder(info.path)
        else:
            state, metadata = read_state_dict(info.path)
            arch, converted, inpainting = prepare_components(state, metadata, info.name)
            del state
        # Keep the cache in the compute dtype so building from it later copies nothing on CPU.
        converted = {part: {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in tensors.items()}
                     for part, tensors in converted.items()}
        prepared = _Prepared(arch, converted, inpainting)
        self._cache[info.sha256] = prepared
        self._trim_cache()
        return prepared

    def _trim_cache(self) -> None:
        while len(self._cache) > self._limit:
            self._cache.popitem(last=False)

    def _unload_live(self) -> None:
        if self._addons is not None:
            self._addons.detach()
            self._addons = None
        self._drop_compiled()
        self._placement.remove()
        cached = self._loaded is not None and any(e.components is self._loaded for e in self._cache.values())
        self._loaded = None
        if not cached:
            release_memory(self.device)

    def unload(self) -> None:
        """Free the live model and the RAM cache."""
        with self._lock:
            self._unload_live()
            self._current = None
            self._cache.clear()
            if self._controlnets is not None:
                self._controlnets.clear()
            release_memory(self.device)

    def reload(self) -> None:
        """Read the current checkpoint from disk again."""
        with self._lock:
            info = self._current
            self.unload()
            if info is not None:
                self.ensure(info)

    def free_after_out_of_memory(self) -> None:
        """After an out-of-memory error: drop everything (checkpoints and every registered holder's models);
        the next job loads what it needs."""
        with self._lock:
            self._unload_holders()
            self.unload()

    # ---- memory plan (webui.models.memory_plan): where the weights live for one job
    def plan_memory(self, job: JobFootprint, forced: str | None = None) -> MemoryPlan:
        """The plan for ``job`` on the live checkpoint, from what is free now (``forced``: that offload mode)."""
        with self._lock:
            components = self._loaded
            if components is None:
                raise ModelLoadError("no model loaded")
            unet_bytes = module_bytes(components.unet)
            sizes = ModelBytes(
                unet=unet_bytes, text_encoders=tuple(module_bytes(m) for m in components.text_encoders),
                vae=module_bytes(components.vae), extras=int(job.controlnets * unet_bytes * 0.45),
                largest_unet_block=largest_child_bytes(components.unet, leaf=False),
                unet_outside_blocks=unet_bytes - sum(module_bytes(child) for child in components.unet.children()
                                                     if isinstance(child, torch.nn.ModuleList)),
                largest_unet_layer=largest_child_bytes(components.unet, leaf=True))
            ram = free_memory_bytes("cpu")
            device_free = ram if self.device == "cpu" else free_memory_bytes(self.device) + self._bytes_on_device()
            dtype = {"torch.float16": "fp16", "torch.bfloat16": "bf16"}.get(str(self.dtype), "fp32")
            return plan_memory(MemoryBudget(self.device, device_free, ram, dtype), sizes, job, forced)

    def place(self, plan: MemoryPlan) -> None:
        """Put the live checkpoint's weights where ``plan`` says (a no-op when they are there already).

        Changing the mode first takes the per-job LoRAs, embeddings and VAE off (they are made again by
        ``addons().prepare``), so no LoRA keeps an original weight on the device the model left.
        """
        with self._lock:
            if self._loaded is None:
                raise ModelLoadError("no model loaded")
            if plan.offload != self._placement.mode and self._addons is not None:
                self._addons.detach()
                self._addons = None
            self._offload, self._plan = plan.offload, plan
            self._placement.apply(self._loaded, plan.offload)

    def refresh_placement(self) -> None:
        """Place again what a job swapped in since ``place`` (a VAE chosen per job), in the same mode."""
        with self._lock:
            if self._loaded is not None:
                self._placement.apply(self._loaded, self._placement.mode)

    @property
    def current_plan(self) -> MemoryPlan | None:
        """The memory plan last placed (the running job's, read on the worker)."""
        return self._plan

    @property
    def offload_mode(self) -> str:
        """How the live checkpoint's weights are placed now: none, model, group or sequential."""
        return self._placement.mode

    def _bytes_on_device(self) -> int:
        """Bytes of the live checkpoint's weights on the compute device now (they can make room by moving)."""
        if self._loaded is None or self.device == "cpu":
            return 0
        kind = torch.device(self.device).type
        return sum(t.numel() * t.element_size() for module in self._loaded.modules()
                   for t in [*module.parameters(), *module.buffers()] if t.device.type == kind)

    # ---- torch.compile (webui.models.compiled)
    def compiled_unet(self, enabled: bool):
        """The live UNet's compile dispatcher when ``enabled`` and its weights stay on the device, else None
        (and the UNet's plain forward back)."""
        from webui.models.compiled import CompiledUNet

        with self._lock:
            if not enabled or self._loaded is None or self._placement.mode != "none":
                self._drop_compiled()
                return None
            if self._compiled is not None and self._compiled.unet is not self._loaded.unet:
                self._drop_compiled()
            if self._compiled is None:
                # raises ValueError for a backend torch does not know (--compile-backend)
                self._compiled = CompiledUNet(self._loaded.unet, self.settings.compile_backend)
            return self._compiled

    def _drop_compiled(self) -> None:
        """Detach the compiled UNet and drop dynamo's caches, whose guards would keep the old weights alive."""
        if self._compiled is None:
            return
        self._compiled.detach()
        self._compiled.wait()
        self._compiled = None
        torch.compiler.reset()

    # ---- per-job extras
    def addons(self):
        """LoRA, embedding and VAE state of the live model (created on first use)."""
        from webui.models.addons import ModelAddons

        with self._lock:
            if self._loaded is None:
                raise ModelLoadError("no model loaded")
            if self._addons is None:
                self._addons = ModelAddons(self.settings, self.catalog, self._loaded, self._current)
            return self._addons

    # ---- learned live-preview decoders (webui.models.preview_decoder, A1111's "TAESD" previews)
    def preview_decoder(self):
        """The live checkpoint's preview decoder from models/VAE-approx/, or None when there is none."""
        from webui.models.loaded_lru import LoadedLRU
        from webui.models.preview_decoder import find_decoder_file, load_decoder

        with self._lock:
            if self._loaded is None or self._current is None:
                return None
            if self._preview_decoders is None:
                self._preview_decoders = LoadedLRU(limit=1)
                self._holders["preview decoders"] = self._preview_decoders
            stem = Path(self._current.name).stem
            path = find_decoder_file(self.settings.model_folder("VAE-approx"), stem, self._loaded.family)
            if path is None:
                return None
            key = (str(path), path.stat().st_mtime_ns)
            return self._preview_decoders.get(key, lambda: load_decoder(path, self.device, self.dtype))

    # ---- ControlNet annotators (webui.models.annotators): networks that make control images
    def run_annotator(self, module: str, image, resolution: int, threshold_a: float, threshold_b: float):
        """The control image of ``image`` through network preprocessor ``module``, its weights read from
        models/ControlNet/annotators/ (InvalidRequest naming a missing file)."""
        from webui.models.annotators import AnnotatorCache

        with self._lock:
            if self._annotators is None:  # under the common policy from now on: freed before loads and on OOM
                self._annotators = AnnotatorCache(self.device)
                self._holders["annotators"] = self._annotators
            cache = self._annotators
        folder = self.settings.model_folder("ControlNet") / "annotators"
        return cache.run(folder, module, image, resolution, threshold_a, threshold_b)

    # ---- ControlNets (webui.models.controlnet): a separate cache the manager owns
    def controlnet(self, name: str):
        """The ControlNet ``name`` (catalog title, name or hash), loaded for the live checkpoint's UNet.

        A ControlNet made for another family raises InvalidRequest naming both.
        """
        from webui.models.controlnet import ControlNetCache

        with self._lock:
            if self._loaded is None:
                raise ModelLoadError("no model loaded")
            if self._controlnets is None:  # under the common policy from now on: freed before loads and on OOM
                self._controlnets = ControlNetCache(self.device, self.dtype)
                self._holders["controlnets"] = self._controlnets
            info = self.catalog.find_controlnet(name)
            return self._controlnets.get(info, dict(self._loaded.unet.config), self._current.title)
