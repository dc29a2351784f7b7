"""Face detection giving the 5 landmarks that face alignment needs, with no download at run time.

The detector is MTCNN from the ``facenet-pytorch`` wheel, whose P/R/O-Net weights
ship inside the wheel (install it with ``pip install --no-deps facenet-pytorch``).
facexlib's RetinaFace is not used: facexlib needs opencv at import time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from webui.schemas import ModelLoadError

INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0"


@dataclass(frozen=True)
class Face:
    """One detected face: box (x0, y0, x1, y1), landmarks 5x2 (eyes, nose, mouth corners; image left first), score."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float


class MTCNNDetector:
    """facenet-pytorch's MTCNN, built on first use and kept."""

    def __init__(self, device: str = "cpu", min_score: float = 0.9, min_face_size: int = 20):
        self.device = device
        self.min_score = min_score
        self.min_face_size = min_face_size
        self._mtcnn = None

    def _model(self):
        if self._mtcnn is None:
            try:
                from facenet_pytorch.models.mtcnn import MTCNN
            except Exception as exc:
                raise ModelLoadError(
                    f"face detection needs the MTCNN weights of facenet-pytorch ({type(exc).__name__}: {exc}); "
                    f"install them with `{INSTALL_HINT}`"
                ) from None
            self._mtcnn = MTCNN(keep_all=True, device=self.device, min_face_size=self.min_face_size, post_process=False)
        return self._mtcnn

    def unload(self) -> None:
        """Drop the MTCNN networks; the next detection builds them again."""
        self._mtcnn = None

    @property
    def loaded(self) -> bool:
        return self._mtcnn is not None

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in ``image`` scoring at least ``min_score``, largest first."""
        import torch

        with torch.inference_mode():
            boxes, scores, points = self._model().detect(image.convert("RGB"), landmarks=True)
        if boxes is None:
            return []
        faces = []
        for box, score, landmarks in zip(boxes, scores, points):
            if score is None or float(score) < self.min_score:
                continue
            box = tuple(float(v) for v in np.asarray(box, dtype=np.float64))
            faces.append(Face(box, np.asarray(landmarks, dtype=np.float64).reshape(5, 2), float(score)))
        faces.sort(key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)
        return faces
