"""ControlNet preprocessors ("modules") that need no downloaded weights, and the list the extension shows.

Each takes an RGB image and the unit's resolution and thresholds and returns the
control image (the "detected map"). Names, slider meanings and defaults follow
sd-webui-controlnet. Modules that run a network (depth, pose, line-art models)
are listed with the annotator file they need in ``models/ControlNet/annotators/``;
the worker runs them (``webui.models.annotators``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from webui.schemas import InvalidRequest


@dataclass(frozen=True)
class Slider:
    """One of a module's sliders as ``/controlnet/module_list`` describes it."""

    name: str
    value: float
    min: float
    max: float
    step: float = 1.0


@dataclass(frozen=True)
class Module:
    """A preprocessor: its function (None: needs an annotator), its sliders, its control type."""

    name: str
    control_type: str
    run: Callable | None
    resolution: bool = True  # whether it uses processor_res
    thresholds: tuple[Slider, ...] = ()
    annotator: str | None = None  # file needed under models/ControlNet/annotators/
    aliases: tuple[str, ...] = ()


def _array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _at_resolution(image: Image.Image, resolution: int) -> Image.Image:
    """The image with its short side at ``resolution`` (the extension's detect resolution)."""
    image = image.convert("RGB")
    short = min(image.size)
    if resolution <= 0 or short == resolution:
        return image
    k = resolution / short
    size = (max(1, round(image.width * k)), max(1, round(image.height * k)))
    return image.resize(size, Image.LANCZOS if k > 1 else Image.BOX)


def _none(image, resolution, a, b, seed):
    return image.convert("RGB")


def _invert(image, resolution, a, b, seed):
    return Image.fromarray(255 - _array(image))


def _canny(image, resolution, low, high, seed):
    try:
        import cv2
    except ImportError:
        cv2 = None
    pixels = _array(_at_resolution(image, resolution))
    if cv2 is not None:
        edges = cv2.Canny(pixels, float(low), float(high))
    else:
        from skimage.feature import canny

        gray = pixels.astype(np.float32).max(axis=2)
        # cv2's thresholds are on the L1 Sobel magnitude of 0-255 pixels; skimage's Sobel is normalised to 1/8.
        edges = canny(gray, sigma=0.5, low_threshold=float(low) / 4, high_threshold=float(high) / 4)
        edges = edges.astype(np.uint8) * 255
    return Image.fromarray(np.stack([edges] * 3, axis=2))


def _threshold(image, resolution, level, b, seed):
    pixels = _array(_at_resolution(image, resolution))
    out = np.where(pixels.min(axis=2) > level, 255, 0).astype(np.uint8)
    return Image.fromarray(np.stack([out] * 3, axis=2))


def _scribble_xdog(image, resolution, level, b, seed):
    from scipy.ndimage import gaussian_filter

    pixels = _array(_at_resolution(image, resolution)).astype(np.float32)
    fine = gaussian_filter(pixels, sigma=(0.5, 0.5, 0))
    coarse = gaussian_filter(pixels, sigma=(5.0, 5.0, 0))
    dog = (255 - np.min(coarse - fine, axis=2)).clip(0, 255)
    out = np.where(2 * (255 - dog) > level, 255, 0).astype(np.uint8)
    return Image.fromarray(np.stack([out] * 3, axis=2))


def _tile_resample(image, resolution, rate, b, seed):
    image = image.convert("RGB")
    if rate <= 1.0:
        return image
    small = image.resize((max(1, round(image.width / rate)), max(1, round(image.height / rate))), Image.BOX)
    return small


def _blur_gaussian(image, resolution, sigma, b, seed):
    return _at_resolution(image, resolution).filter(ImageFilter.GaussianBlur(radius=float(sigma)))


def _shuffle(image, resolution, a, b, seed):
    """Content shuffle: pixels moved along a smooth random flow (seeded, so a rerun repeats)."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    pixels = _array(_at_resolution(image, resolution)).astype(np.float32)
    h, w = pixels.shape[:2]
    rng = np.random.default_rng(seed)
    flow = [gaussian_filter(rng.random((h, w)), sigma=max(h, w) / 8) for _ in range(2)]
    flow = [(f - f.min()) / max(float(f.max() - f.min()), 1e-6) for f in flow]
    rows, cols = flow[0] * (h - 1), flow[1] * (w - 1)
    out = np.stack([map_coordinates(pixels[..., c], [rows, cols], order=1) for c in range(3)], axis=2)
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def _color_grid(image, resolution, a, b, seed):
    """The colour adapter's input: the image in cells of 64x64 pixels, each its average colour."""
    image = _at_resolution(image, resolution)
    cells = image.resize((max(1, image.width // 64), max(1, image.height // 64)), Image.BICUBIC)
    return cells.resize(image.size, Image.NEAREST)


_RES = Slider("Preprocessor Resolution", 512, 64, 2048, 8)
MODULES: tuple[Module, ...] = (
    Module("none", "All", _none, resolution=False),
    Module("invert (from white bg & black line)", "Scribble", _invert, resolution=False, aliases=("invert",)),
    Module("canny", "Canny", _canny,
           thresholds=(Slider("Canny Low Threshold", 100, 1, 255), Slider("Canny High Threshold", 200, 1, 255))),
    Module("threshold", "Segmentation", _threshold, thresholds=(Slider("Binarization Threshold", 127, 0, 255),)),
    Module("scribble_xdog", "Scribble", _scribble_xdog, thresholds=(Slider("XDoG Threshold", 32, 1, 64),)),
    Module("tile_resample", "Tile", _tile_resample, resolution=False,
           thresholds=(Slider("Down Sampling Rate", 1.0, 1.0, 8.0, 0.01),)),
    Module("blur_gaussian", "Tile", _blur_gaussian, thresholds=(Slider("Sigma", 9.0, 0.01, 64.0, 0.01),)),
    Module("shuffle", "Shuffle", _shuffle),
    Module("t2ia_color_grid", "T2I-Adapter", _color_grid),
    # Network annotators (webui.models.annotators runs them): the first file each needs, by the extension's names.
    Module("depth_midas", "Depth", None, annotator="dpt_hybrid-midas-501f0c75.pt"),
    Module("depth_leres", "Depth", None, annotator="res101.pth"),
    Module("openpose", "OpenPose", None, annotator="body_pose_model.pth"),
    Module("openpose_hand", "OpenPose", None, annotator="body_pose_model.pth"),
    Module("openpose_face", "OpenPose", None, annotator="body_pose_model.pth"),
    Module("openpose_faceonly", "OpenPose", None, annotator="body_pose_model.pth"),
    Module("openpose_full", "OpenPose", None, annotator="body_pose_model.pth"),
    Module("softedge_hed", "SoftEdge", None, annotator="ControlNetHED.pth"),
    Module("softedge_pidinet", "SoftEdge", None, annotator="table5_pidinet.pth"),
    Module("scribble_hed", "Scribble", None, annotator="ControlNetHED.pth"),
    Module("scribble_pidinet", "Scribble", None, annotator="table5_pidinet.pth"),
    Module("lineart_realistic", "Lineart", None, annotator="sk_model.pth"),
    Module("lineart_coarse", "Lineart", None, annotator="sk_model2.pth"),
    Module("lineart_anime", "Lineart", None, annotator="netG.pth"),
    Module("mlsd", "MLSD", None, annotator="mlsd_large_512_fp32.pth",
           thresholds=(Slider("MLSD Value Threshold", 0.1, 0.01, 2.0, 0.01),
                       Slider("MLSD Distance Threshold", 0.1, 0.01, 20.0, 0.01))),
    Module("normal_bae", "NormalMap", None, annotator="scannet.pt"),
    Module("seg_ofade20k", "Segmentation", None, annotator="upernet_global_small.pth"),
    Module("t2ia_sketch_pidi", "T2I-Adapter", None, annotator="table5_pidinet.pth"),
)
CONTROL_TYPES = ("All", "Canny", "Depth", "NormalMap", "OpenPose", "MLSD", "Lineart", "SoftEdge", "Scribble",
                 "Segmentation", "Shuffle", "Tile", "T2I-Adapter")
# Words in a ControlNet's file name that name its control type (as the extension filters its model list).
CONTROL_TYPE_WORDS = {"Canny": ("canny",), "Depth": ("depth",), "NormalMap": ("normal",), "OpenPose": ("pose",),
                      "MLSD": ("mlsd",), "Lineart": ("lineart",), "SoftEdge": ("softedge", "hed", "pidi"),
                      "Scribble": ("scribble", "sketch"), "Segmentation": ("seg", "silhouette"),
                      "Shuffle": ("shuffle",), "Tile": ("tile", "blur"), "T2I-Adapter": ("t2i", "adapter")}


def find_module(name: str) -> Module:
    """The module by name or alias (any case); InvalidRequest listing the known ones otherwise."""
    wanted = str(name or "none").strip().lower()
    for module in MODULES:
        if wanted == module.name or wanted in module.aliases:
            return module
    raise InvalidRequest(f"unknown ControlNet preprocessor {name!r}; known: {', '.join(m.name for m in MODULES)}",
                         field="module")


def module_details(module: Module) -> dict:
    """The extension's ``module_detail`` entry: model-free flag and slider descriptions."""
    sliders = []
    if module.resolution:
        sliders.append(vars(_RES) | {"name": _RES.name})
    sliders.extend(vars(s) | {"name": s.name} for s in module.thresholds)
    return {"model_free": False, "sliders": sliders}


def pixel_perfect_resolution(image: Image.Image, width: int, height: int, resize_mode: str) -> int:
    """The processor resolution that maps the image 1:1 onto the generated size (the extension's formula)."""
    k_h, k_w = height / image.height, width / image.width
    k = min(k_h, k_w) if resize_mode == "Resize and Fill" else max(k_h, k_w)
    return int(round(k * min(image.width, image.height)))


NetworkRunner = Callable[[str, Image.Image, int, float, float], Image.Image]


def needs_network(name: str) -> bool:
    """Whether module ``name`` runs an annotator network (so only the queue's worker may run it)."""
    return find_module(name).run is None


def run_module(name: str, image: Image.Image, resolution: int = -1, threshold_a: float = -1,
               threshold_b: float = -1, network: NetworkRunner | None = None, seed: int = 0) -> Image.Image:
    """The control image of ``image`` through module ``name``; -1 values take the module's defaults.

    Network modules go to ``network(module, image, resolution, a, b)`` (the worker's annotators).
    """
    module = find_module(name)
    resolution, a, b = effective_settings(module.name, resolution, threshold_a, threshold_b)
    if module.run is None:
        if network is None:
            raise InvalidRequest(f"ControlNet preprocessor {module.name} runs a network: it runs in a queued job "
                                 "only", field="module")
        return network(module.name, image, resolution, a, b)
    return module.run(image, resolution, a, b, seed)


def effective_settings(name: str, resolution: int, threshold_a: float, threshold_b: float) -> tuple[int, float, float]:
    """The resolution and thresholds a module runs with: -1 (or unset) takes the module's defaults."""
    module = find_module(name)
    resolution = int(resolution) if resolution and resolution > 0 else int(_RES.value)
    values = [float(threshold_a), float(threshold_b)]
    for i, slider in enumerate(module.thresholds):
        if values[i] is None or values[i] < 0:
            values[i] = float(slider.value)
    return resolution, values[0], values[1]
