"""Face restoration (GFPGAN, CodeFormer through spandrel): detect, align, restore, paste back."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from webui.config import Settings
from webui.schemas import InvalidRequest, ModelLoadError, NotFound
from webui.postprocess import loading
from webui.postprocess.face_align import align_face, paste_face
from webui.postprocess.face_detection import Face, MTCNNDetector
from webui.postprocess.imageops import model_dtype, pil_to_tensor, tensor_to_pil


@dataclass(frozen=True)
class RestorerSpec:
    name: str
    folder: str  # A1111's folder under models/
    architecture: str  # spandrel's architecture id
    preferred_files: tuple[str, ...]  # A1111's download names, tried first


RESTORERS = (
    RestorerSpec("CodeFormer", "Codeformer", "CodeFormer", ("codeformer-v0.1.0.pth", "codeformer.pth")),
    RestorerSpec("GFPGAN", "GFPGAN", "GFPGAN", ("GFPGANv1.4.pth", "GFPGANv1.3.pth", "GFPGANCleanv1-NoCE-C2.pth")),
)


class FaceRestorers:
    """The available face restorers and the face pipeline around them; one model held at a time."""

    def __init__(self, settings: Settings, detector=None):
        self.settings = settings
        self._detector = detector
        self._lock = threading.RLock()
        self._spandrel = None
        self._files: dict[str, Path] | None = None
        self._loaded: tuple[str, object] | None = None

    # ------------------------------------------------------------------ listing
    def _registry(self):
        if self._spandrel is None:
            self._spandrel = loading.make_registry()
        return self._spandrel

    def refresh(self) -> None:
        """Rescan models/Codeformer and models/GFPGAN."""
        files: dict[str, Path] = {}
        for spec in RESTORERS:
            folder = self.settings.model_folder(spec.folder)
            if not folder.is_dir():
                continue
            candidates = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in loading.MODEL_EXTENSIONS]
            preferred = {name.lower(): rank for rank, name in enumerate(spec.preferred_files)}
            candidates.sort(key=lambda p: (preferred.get(p.name.lower(), len(preferred)), p.name.lower()))
            for path in candidates:
                try:
                    if loading.detect_architecture(path, self._registry()) == spec.architecture:
                        files[spec.name] = path
                        break
                except ModelLoadError:
                    continue  # unreadable files are not restorers; the folder also holds detector weights
        with self._lock:
            self._files = files
            if self._loaded is not None and self._loaded[0] not in files:
                self._loaded = None

    def _scan(self) -> dict[str, Path]:
        if self._files is None:
            self.refresh()
        return self._files

    def names(self) -> list[str]:
        """Restorers whose weights are present, in A1111's order: CodeFormer, GFPGAN."""
        files = self._scan()
        return [spec.name for spec in RESTORERS if spec.name in files]

    def model_path(self, name: str) -> Path:
        """The weight file used for ``name``; NotFound saying which file to put where when missing."""
        spec = self._spec(name)
        path = self._scan().get(spec.name)
        if path is None:
            folder = self.settings.model_folder(spec.folder)
            raise NotFound(
                f"{spec.name} weights not found: put {spec.preferred_files[0]} (or another {spec.name} model file) in {folder}"
            )
        return path

    @staticmethod
    def _spec(name: str) -> RestorerSpec:
        for spec in RESTORERS:
            if spec.name.lower() == str(name).lower():
                return spec
        raise NotFound(f"face restorer {name!r} not found; known: {', '.join(s.name for s in RESTORERS)}")

    # ------------------------------------------------------------------ models
    def detector(self):
        """The face detector (MTCNN unless one was given)."""
        if self._detector is None:
            self._detector = MTCNNDetector(device=self.settings.torch_device())
        return self._detector

    def _model(self, spec: RestorerSpec):
        with self._lock:
            if self._loaded is not None and self._loaded[0] == spec.name:
                return self._loaded[1]
            self._loaded = None
            descriptor = loading.load_model(self.model_path(spec.name), self._registry())
            if str(descriptor.architecture.id) != spec.architecture:
                raise ModelLoadError(f"{self.model_path(spec.name).name} is a {descriptor.architecture.id} model, not {spec.name}")
            device = self.settings.torch_device()
            descriptor.to(device).to(model_dtype(descriptor, self.settings.torch_dtype(), device))
            self._loaded = (spec.name, descriptor)
            return descriptor

    def unload(self) -> None:
        """Drop the cached restorer model and the face detector's weights."""
        with self._lock:
            self._loaded = None
            unload_detector = getattr(self._detector, "unload", None)
            if callable(unload_detector):
                unload_detector()

    # ------------------------------------------------------------------ running
    def detect(self, image: Image.Image) -> list[Face]:
        """The faces the pipeline would restore."""
        return self.detector().detect(image)

    def restore(self, image: Image.Image, name: str, visibility: float, codeformer_weight: float = 0.5,
                should_stop=None) -> Image.Image:
        """Restore every detected face of ``image`` with ``name`` and blend the result in by ``visibility``.

        ``codeformer_weight`` is A1111's CodeFormer weight (0 = strongest effect,
        1 = closest to the input). Pixels outside the faces are unchanged.
        ``should_stop()`` is asked before every face; when it says True,
        InterruptedError ends the restoration (as a tiled upscale stops).
        """
        if not 0.0 <= visibility <= 1.0:
            raise InvalidRequest(f"visibility must be between 0 and 1, got {visibility}", field="visibility")
        if not 0.0 <= codeformer_weight <= 1.0:
            raise InvalidRequest(f"CodeFormer weight must be between 0 and 1, got {codeformer_weight}", field="codeformer_weight")
        spec = self._spec(name)
        source = image.convert("RGB")
        if visibility == 0:
            return source.copy()
        with self._lock:
            descriptor = self._model(spec)
            result = source
            for face in self.detect(source):
                if should_stop is not None and should_stop():
                    raise InterruptedError("face restoration stopped")
                crop, to_face = align_face(source, face.landmarks)
                restored = self._run(descriptor, spec, crop, codeformer_weight)
                result = paste_face(result, restored, to_face)
        if visibility < 1.0:
            result = _blend(source, result, visibility)
        if image.mode == "RGBA":
            result.putalpha(image.getchannel("A"))
        return result

    def _run(self, descriptor, spec: RestorerSpec, crop: Image.Image, weight: float) -> Image.Image:
        import torch

        x = pil_to_tensor(crop, str(descriptor.device), descriptor.dtype) * 2 - 1  # the models work in [-1, 1]
        with torch.inference_mode():
            if spec.architecture == "GFPGAN":
                y = descriptor.model(x, return_rgb=False, randomize_noise=False)[0]
            else:
                y = descriptor.model(x, weight=weight)[0]
        return tensor_to_pil((y.float().clamp(-1, 1) + 1) / 2)


def _blend(original: Image.Image, restored: Image.Image, visibility: float) -> Image.Image:
    """Mix like Image.blend but keep pixels where both images agree bit-identical."""
    a = np.asarray(original, dtype=np.float32)
    b = np.asarray(restored, dtype=np.float32)
    mixed = np.clip(np.rint(a + (b - a) * visibility), 0, 255).astype(np.uint8)
    return Image.fromarray(mixed, "RGB")
