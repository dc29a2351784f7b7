"""Upscalers: the built-in resamplers plus every spandrel-recognised model in A1111's folders."""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from webui.config import Settings
from webui.vocabulary import A1111_UPSCALER_NAMES, BUILTIN_UPSCALERS
from webui.schemas import InvalidRequest, ModelLoadError, NotFound
from webui.postprocess import loading
from webui.postprocess.imageops import model_dtype, pil_to_tensor, tensor_to_pil
from webui.postprocess.tiling import run_tiled

UPSCALER_FOLDERS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT")
# Recognised by spandrel but not upscalers: face restorers and inpainting models.
NOT_UPSCALER_ARCHITECTURES = frozenset({"GFPGAN", "CodeFormer", "RestoreFormer", "LaMa", "MAT"})
MAX_MODEL_PASSES = 3  # A1111 applies a model at most three times to reach the target size
# Context (input pixels) each tile gets on every side, at least. Measured with the real
# RealESRGAN_x4plus on a 256px photo: 16 px leaves seams up to 74/255 levels, 48 px at most 7
# (mean 0.03), 64 px at most 1.5; SRVGG Compact models are exact from 18 px on.
MIN_TILE_OVERLAP = 48


@dataclass(frozen=True)
class UpscalerInfo:
    """One entry of the list: ``path`` and ``architecture`` are None for the built-ins."""

    name: str
    path: Path | None = None
    architecture: str | None = None
    scale: int = 4  # a model's native factor, guessed from its file name; 4 for the built-ins as in A1111's API


@dataclass(frozen=True)
class UnrecognisedModel:
    """A file in an upscaler folder that could not be listed, and why."""

    path: Path
    reason: str


def _guess_scale(stem: str) -> int:
    match = re.search(r"(?:^|[^a-z0-9])(?:x(\d)|(\d)x)(?![0-9])", stem.lower())
    if match:
        return int(match.group(1) or match.group(2))
    return 4


class UpscalerRegistry:
    """Lists and runs upscalers; at most one model is held in memory at a time.

    The tile size and overlap are A1111's options ``ESRGAN_tile`` and ``ESRGAN_tile_overlap``
    when ``options`` (the runtime options store) has them, else the start-up settings'. Tiles
    get at least ``min_tile_overlap`` pixels of context.
    """

    def __init__(self, settings: Settings, *, min_tile_overlap: int = MIN_TILE_OVERLAP, options=None):
        self.settings = settings
        self.options = options
        self.min_tile_overlap = min_tile_overlap
        self._lock = threading.RLock()
        self._spandrel = None
        self._models: dict[str, UpscalerInfo] = {}
        self._unrecognised: list[UnrecognisedModel] = []
        self._loaded: tuple[str, object] | None = None
        self._scanned = False
        self._detected: dict[tuple[str, int, int], object] = {}

    def _option(self, key: str, default: int) -> int:
        value = self.options.get(key, default) if self.options is not None else default
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else default

    @property
    def tile_size(self) -> int:
        """Tile side in input pixels (0 = no tiling): the ``ESRGAN_tile`` option, else the start-up setting."""
        return self._option("ESRGAN_tile", self.settings.upscaler_tile_size)

    @property
    def tile_overlap(self) -> int:
        """Context pixels per tile side: ``ESRGAN_tile_overlap`` (else the setting), at least the minimum."""
        return max(self._option("ESRGAN_tile_overlap", self.settings.upscaler_tile_overlap), self.min_tile_overlap)

    # ------------------------------------------------------------------ listing
    def _registry(self):
        if self._spandrel is None:
            self._spandrel = loading.make_registry()
        return self._spandrel

    def refresh(self) -> None:
        """Rescan the model folders (drops the loaded model when its file changed)."""
        models: dict[str, UpscalerInfo] = {}
        unrecognised: list[UnrecognisedModel] = []
        for folder_name in UPSCALER_FOLDERS:
            folder = self.settings.model_folder(folder_name)
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if not path.is_file() or path.suffix.lower() not in loading.MODEL_EXTENSIONS:
                    continue
                arch = self._detect(path)
                if isinstance(arch, ModelLoadError):
                    unrecognised.append(UnrecognisedModel(path, str(arch)))
                    continue
                if arch is None:
                    unrecognised.append(UnrecognisedModel(path, "spandrel does not recognise this architecture"))
                    continue
                if arch in NOT_UPSCALER_ARCHITECTURES:
                    unrecognised.append(UnrecognisedModel(path, f"a {arch} model, not an upscaler"))
                    continue
                name = path.stem
                if name in models or name in BUILTIN_UPSCALERS:
                    name = f"{path.stem} ({folder_name})"
                if name in models:
                    unrecognised.append(UnrecognisedModel(path, f"duplicate upscaler name {path.stem!r}"))
                    continue
                models[name] = UpscalerInfo(name, path, arch, _guess_scale(path.stem))
        with self._lock:
            self._models = models
            self._unrecognised = unrecognised
            self._scanned = True
            if self._loaded is not None and self._loaded[0] not in models:
                self._loaded = None

    def _detect(self, path: Path):
        """Architecture id, None (unknown) or the ModelLoadError; cached by path, size and mtime."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._detected:
            try:
                self._detected[key] = loading.detect_architecture(path, self._registry())
            except ModelLoadError as exc:
                self._detected[key] = exc
        return self._detected[key]

    def _ensure_scanned(self) -> None:
        if not self._scanned:
            self.refresh()

    def list(self) -> list[UpscalerInfo]:
        """Built-ins first (None, Lanczos, Nearest), A1111's names of the models present, then the models by name."""
        self._ensure_scanned()
        builtins = [UpscalerInfo(name) for name in BUILTIN_UPSCALERS]
        return builtins + self._a1111_names() + [self._models[name] for name in sorted(self._models, key=str.lower)]

    def _a1111_names(self) -> list[UpscalerInfo]:
        """An entry under A1111's name for each A1111 upscaler one of our files stands for."""
        by_stem = {info.path.stem.lower(): info for info in self._models.values()}
        entries = []
        for name, stems in A1111_UPSCALER_NAMES.items():
            found = next((by_stem[stem.lower()] for stem in stems if stem.lower() in by_stem), None)
            if found is not None and name not in self._models:
                entries.append(UpscalerInfo(name, found.path, found.architecture, found.scale))
        return entries

    def names(self) -> list[str]:
        """Upscaler names as shown to the user and accepted by ``upscale``."""
        return [info.name for info in self.list()]

    def unrecognised(self) -> list[UnrecognisedModel]:
        """Files in the upscaler folders that are not usable upscalers."""
        self._ensure_scanned()
        return list(self._unrecognised)

    def get(self, name: str) -> UpscalerInfo:
        """The entry of ``name`` (exact, then case-insensitive); NotFound otherwise."""
        for info in self.list():
            if info.name == name:
                return info
        for info in self.list():
            if info.name.lower() == str(name).lower():
                return info
        raise NotFound(f"upscaler {name!r} not found; available: {', '.join(self.names())}")

    # ------------------------------------------------------------------ models
    def _model(self, info: UpscalerInfo):
        with self._lock:
            if self._loaded is not None and self._loaded[0] == info.name:
                return self._loaded[1]
            self._loaded = None  # free the previous model before loading the next
            descriptor = loading.load_model(info.path, self._registry())
            from spandrel import ImageModelDescriptor

            if not isinstance(descriptor, ImageModelDescriptor):
                raise ModelLoadError(f"{info.path.name}: not an image-to-image model")
            device = self.settings.torch_device()
            dtype = model_dtype(descriptor, self.settings.torch_dtype(), device)
            descriptor.to(device).to(dtype)
            self._loaded = (info.name, descriptor)
            return descriptor

    def unload(self) -> None:
        """Drop the cached model so its memory can be reused."""
        with self._lock:
            self._loaded = None

    def loaded_name(self) -> str | None:
        """Name of the model held in memory, if any."""
        return self._loaded[0] if self._loaded else None

    # ------------------------------------------------------------------ running
    def upscale(self, image: Image.Image, name: str, scale: float, *, tile_size: int | None = None,
                should_stop=None) -> Image.Image:
        """Upscale ``image`` by ``scale`` with upscaler ``name``.

        A model runs at its own factor (repeated, at most three times, while the
        image is still smaller than the target, as A1111 does); the result is then
        resized with Lanczos to exactly ``round(size * scale)``. ``tile_size``
        overrides ``tile_size`` (0 = no tiling). ``should_stop()`` is asked
        before every tile; when it says True, InterruptedError ends the upscale.
        """
        if not scale or scale <= 0:
            raise InvalidRequest(f"upscale factor must be positive, got {scale}", field="scale")
        info = self.get(name)
        width = max(1, round(image.width * scale))
        height = max(1, round(image.height * scale))
        if width * height > self.settings.max_image_pixels:
            raise InvalidRequest(f"{width}x{height} is larger than the limit of {self.settings.max_image_pixels} pixels")
        if info.name == "Nearest":
            return _resize(image, width, height, Image.Resampling.NEAREST)
        if info.path is None:  # None and Lanczos: A1111's "None" still resizes with Lanczos
            return _resize(image, width, height, Image.Resampling.LANCZOS)
        tile = self.tile_size if tile_size is None else tile_size
        result = image
        for _ in range(MAX_MODEL_PASSES):
            if result.width >= width and result.height >= height:
                break
            result = self._run_model(result, info, tile, should_stop)
        return _resize(result, width, height, Image.Resampling.LANCZOS)

    def _run_model(self, image: Image.Image, info: UpscalerInfo, tile: int, should_stop=None) -> Image.Image:
        import torch

        with self._lock:
            descriptor = self._model(info)
            alpha = image.getchannel("A") if "A" in image.getbands() else None
            tensor = pil_to_tensor(image, str(descriptor.device), descriptor.dtype)
            with torch.inference_mode():
                output = run_tiled(descriptor, tensor, descriptor.scale, tile, self.tile_overlap, should_stop)
        result = tensor_to_pil(output)
        if image.mode == "L":
            result = result.convert("L")
        if alpha is not None:
            result.putalpha(alpha.resize(result.size, Image.Resampling.LANCZOS))
        return result


def _resize(image: Image.Image, width: int, height: int, resample) -> Image.Image:
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "A" in image.getbands() or image.mode == "P" else "RGB")
    if image.size == (width, height):
        return image.copy()
    return image.resize((width, height), resample=resample)
