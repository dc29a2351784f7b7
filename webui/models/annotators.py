"""ControlNet annotators that run a network (depth, pose, line art, soft edges, straight lines).

The networks and their pre- and post-processing come from ``controlnet_aux`` (the
annotators of sd-webui-controlnet as a library); their weights are the files users
already have from lllyasviel's Annotators repository, read from
``models/ControlNet/annotators/`` and nowhere else: nothing is downloaded. The
model manager owns an :class:`AnnotatorCache`, so loaded annotators are freed by
the same memory policy as every other model, and only the queue's worker runs them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from webui.models.loaded_lru import LoadedLRU
from webui.schemas import InvalidRequest, ModelLoadError


@dataclass(frozen=True)
class Annotator:
    """How one preprocessor runs: the files it needs, how they load, how an image goes through."""

    files: tuple[str, ...]
    load: Callable[[list[Path], Any], Any]  # (the files' paths, device) -> a controlnet_aux detector on it
    detect: Callable[[Any, np.ndarray, int, float, float], Any]  # (detector, RGB array, resolution, a, b)


_BODY, _HAND, _FACE = "body_pose_model.pth", "hand_pose_model.pth", "facenet.pth"


def _midas(paths, device):
    from controlnet_aux.midas import MidasDetector

    return MidasDetector.from_pretrained(str(paths[0].parent), filename=paths[0].name).to(device)


def _openpose(paths, device):
    from controlnet_aux.open_pose import OpenposeDetector
    from controlnet_aux.open_pose.body import Body
    from controlnet_aux.open_pose.face import Face
    from controlnet_aux.open_pose.hand import Hand

    named = {p.name: p for p in paths}  # only the networks the variant draws with (its .to() wants all three)
    hand = Hand(str(named[_HAND])).to(device) if _HAND in named else None
    face = Face(str(named[_FACE])).to(device) if _FACE in named else None
    return OpenposeDetector(Body(str(named[_BODY])).to(device), hand, face)


def _hed(paths, device):
    from controlnet_aux.hed import HEDdetector

    return HEDdetector.from_pretrained(str(paths[0].parent), filename=paths[0].name).to(device)


def _pidinet(paths, device):
    from controlnet_aux.pidi import PidiNetDetector

    return PidiNetDetector.from_pretrained(str(paths[0].parent), filename=paths[0].name).to(device)


def _lineart(paths, device):
    import torch
    from controlnet_aux.lineart import Generator, LineartDetector

    model = Generator(3, 1, 3)
    model.load_state_dict(torch.load(str(paths[0]), map_location="cpu", weights_only=True))
    model.eval()
    model = model.to(device)
    return LineartDetector(model, model)  # one network: the fine (sk_model) or the coarse (sk_model2) one


def _lineart_anime(paths, device):
    from controlnet_aux.lineart_anime import LineartAnimeDetector

    return LineartAnimeDetector.from_pretrained(str(paths[0].parent), filename=paths[0].name).to(device)


def _normal_bae(paths, device):
    from controlnet_aux.normalbae import NormalBaeDetector

    return NormalBaeDetector.from_pretrained(str(paths[0].parent), filename=paths[0].name).to(device)


def _mlsd(paths, device):
    from controlnet_aux.mlsd import MLSDdetector

    return MLSDdetector.from_pretrained(str(paths[0].parent), filename=paths[0].name).to(device)


def _sized(resolution: int) -> dict:
    return {"detect_resolution": resolution, "image_resolution": resolution}


def _pose(hand: bool, face: bool, body: bool = True):
    return lambda d, x, r, a, b: d(x, include_body=body, include_hand=hand, include_face=face, **_sized(r))


ANNOTATORS: dict[str, Annotator] = {
    "depth_midas": Annotator(("dpt_hybrid-midas-501f0c75.pt",), _midas, lambda d, x, r, a, b: d(x, **_sized(r))),
    "openpose": Annotator((_BODY,), _openpose, _pose(False, False)),
    "openpose_hand": Annotator((_BODY, _HAND), _openpose, _pose(True, False)),
    "openpose_face": Annotator((_BODY, _FACE), _openpose, _pose(False, True)),
    "openpose_faceonly": Annotator((_BODY, _FACE), _openpose, _pose(False, True, body=False)),
    "openpose_full": Annotator((_BODY, _HAND, _FACE), _openpose, _pose(True, True)),
    "softedge_hed": Annotator(("ControlNetHED.pth",), _hed, lambda d, x, r, a, b: d(x, **_sized(r))),
    "scribble_hed": Annotator(("ControlNetHED.pth",), _hed, lambda d, x, r, a, b: d(x, scribble=True, **_sized(r))),
    "softedge_pidinet": Annotator(("table5_pidinet.pth",), _pidinet, lambda d, x, r, a, b: d(x, **_sized(r))),
    "scribble_pidinet": Annotator(("table5_pidinet.pth",), _pidinet,
                                  lambda d, x, r, a, b: d(x, scribble=True, **_sized(r))),
    "t2ia_sketch_pidi": Annotator(("table5_pidinet.pth",), _pidinet, lambda d, x, r, a, b: d(x, **_sized(r))),
    "lineart_realistic": Annotator(("sk_model.pth",), _lineart, lambda d, x, r, a, b: d(x, **_sized(r))),
    "lineart_coarse": Annotator(("sk_model2.pth",), _lineart, lambda d, x, r, a, b: d(x, coarse=True, **_sized(r))),
    "lineart_anime": Annotator(("netG.pth",), _lineart_anime, lambda d, x, r, a, b: d(x, **_sized(r))),
    "normal_bae": Annotator(("scannet.pt",), _normal_bae, lambda d, x, r, a, b: d(x, **_sized(r))),
    "mlsd": Annotator(("mlsd_large_512_fp32.pth",), _mlsd,
                      lambda d, x, r, a, b: d(x, thr_v=a, thr_d=b, **_sized(r))),
}


def annotator_files(module: str) -> tuple[str, ...]:
    """The files under models/ControlNet/annotators/ that ``module`` needs (empty: not run by this server)."""
    spec = ANNOTATORS.get(module)
    return spec.files if spec is not None else ()


class AnnotatorCache(LoadedLRU):
    """Loaded annotator networks by their files; the model manager owns one (``limit`` kept, LRU)."""

    def __init__(self, device, limit: int = 2):
        super().__init__(limit)
        self.device = device

    def run(self, folder: Path, module: str, image: Image.Image, resolution: int, a: float, b: float) -> Image.Image:
        """The control image of ``image`` through network preprocessor ``module`` (InvalidRequest naming a
        missing file, or a module this server does not run)."""
        spec = ANNOTATORS.get(module)
        if spec is None:
            raise InvalidRequest(f"ControlNet preprocessor {module} is not run by this server: send an already "
                                 "preprocessed image with module none", field="module")
        paths = [Path(folder) / name for name in spec.files]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise InvalidRequest(f"ControlNet preprocessor {module}: models/ControlNet/annotators/{missing[0]} is "
                                 "needed: put that file there (or send an already preprocessed image with module "
                                 "none)", field="module")
        detector = self._detector(spec, paths)
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
        out = spec.detect(detector, pixels, int(resolution), float(a), float(b))
        out = out[0] if isinstance(out, tuple) else out
        return (out if isinstance(out, Image.Image) else Image.fromarray(np.asarray(out))).convert("RGB")

    def _detector(self, spec: Annotator, paths: list[Path]):
        key = (spec.load, tuple(str(p) for p in paths), tuple(p.stat().st_mtime_ns for p in paths))
        return self.get(key, lambda: self._load(spec, paths))

    def _load(self, spec: Annotator, paths: list[Path]):
        try:
            return spec.load(paths, self.device)
        except (RuntimeError, KeyError, ValueError, OSError) as exc:
            names = ", ".join(p.name for p in paths)
            raise ModelLoadError(f"annotator file(s) {names} could not be loaded: {str(exc)[:300]}") from None
