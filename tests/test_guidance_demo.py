"""The demo model shows what the add-ons are for: at CFG 30 colours burn, dynamic thresholding and CFG rescale help;
soft inpainting leaves no visible seam."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from webui.catalog import Catalog
from webui.config import PROJECT_ROOT, Settings
from webui.demo.shapes import COLOURS
from webui.engine.engine import Engine
from webui.models.manager import ModelManager
from webui.schemas import GenerationRequest

DEMO = PROJECT_ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
PALETTE = np.array(list(COLOURS.values()), dtype=np.float64)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-addons")
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(DEMO, root / "models" / "Stable-diffusion")
    settings = Settings(models_dir=root / "models", outdir=root / "outputs", device="cpu", precision="fp32",
                        save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    return Engine(settings, catalog, ModelManager(settings, catalog))


def image(engine, **fields) -> np.ndarray:
    fields.setdefault("seed", 3)
    request = GenerationRequest(prompt="a red circle on a blue background", steps=10, width=64, height=64,
                                sampler_name="Euler a", save_images=False, **fields)
    return np.asarray(engine.generate(request).images[0].convert("RGB"), dtype=np.float64)


def palette_distance(pixels: np.ndarray) -> float:
    """Mean distance of each pixel to the nearest colour the demo model was trained on."""
    return float(np.sqrt(((pixels[:, :, None, :] - PALETTE) ** 2).sum(-1)).min(-1).mean())


@pytest.fixture(scope="module")
def burnt(engine):
    return image(engine, cfg_scale=30)


def test_dynamic_thresholding_keeps_cfg_30_on_the_palette_and_close_to_cfg_7(engine):
    # Averaged over seeds: one composition may still drift away from its CFG 7 image (seed 3 does).
    thresholding = {"Dynamic Thresholding (CFG Scale Fix)": {"args": [True, 7]}}
    cfg7, burnt, fixed = [], [], []
    for seed in range(1, 7):
        cfg7.append(image(engine, cfg_scale=7, seed=seed))
        burnt.append(image(engine, cfg_scale=30, seed=seed))
        fixed.append(image(engine, cfg_scale=30, seed=seed, alwayson_scripts=thresholding))

    def mean_palette_distance(images):
        return float(np.mean([palette_distance(pixels) for pixels in images]))

    def mean_difference_to_cfg7(images):
        return float(np.mean([np.abs(pixels - reference).mean() for pixels, reference in zip(images, cfg7)]))

    assert mean_palette_distance(burnt) > mean_palette_distance(cfg7) + 10  # CFG 30 burns the colours
    assert mean_palette_distance(fixed) < mean_palette_distance(burnt) / 2
    assert mean_difference_to_cfg7(fixed) < mean_difference_to_cfg7(burnt)


def test_cfg_rescale_pulls_cfg_30_back_towards_the_palette(engine, burnt):
    rescaled = image(engine, cfg_scale=30, alwayson_scripts={"CFG Rescale Extension": {"args": [0.7]}})
    assert palette_distance(rescaled) < palette_distance(burnt) - 4


# ------------------------------------------------------------------ soft inpainting: no visible seam
BOX = (8, 8, 40, 40)  # the hard-edged rectangle to repaint (x0, y0, x1, y1), over part of the shape
MASK_BLUR = 4  # A1111's default
SEAM_MARGIN = 1.5  # levels of 255 a seam may exceed the image's typical neighbour step by


def step_across_border(pixels: np.ndarray, offset: int) -> float:
    """Mean colour step between neighbouring pixels across the rectangle's outline moved ``offset`` pixels inwards."""
    x0, y0, x1, y1 = BOX
    d = offset
    steps = [pixels[y0:y1, x0 + d] - pixels[y0:y1, x0 + d - 1], pixels[y0:y1, x1 - d] - pixels[y0:y1, x1 - d - 1],
             pixels[y0 + d, x0:x1] - pixels[y0 + d - 1, x0:x1], pixels[y1 - d, x0:x1] - pixels[y1 - d - 1, x0:x1]]
    return float(np.abs(np.concatenate(steps)).mean())


def seam(pixels: np.ndarray) -> float:
    """The strongest step across the mask border, looking at every line within the blur band around it."""
    return max(step_across_border(pixels, d) for d in range(-MASK_BLUR, MASK_BLUR + 1))


def typical_step(pixels: np.ndarray) -> float:
    """Mean colour step between neighbouring pixels of the repainted and the kept region, away from the border band."""
    x0, y0, x1, y1 = BOX
    ys, xs = np.mgrid[0:pixels.shape[0], 0:pixels.shape[1]]
    outside_by = np.maximum(np.maximum(x0 - xs, xs - (x1 - 1)), np.maximum(y0 - ys, ys - (y1 - 1)))
    far = np.abs(outside_by) > MASK_BLUR + 1
    dx = np.abs(pixels[:, 1:] - pixels[:, :-1]).mean(-1)[far[:, 1:] & far[:, :-1]]
    dy = np.abs(pixels[1:] - pixels[:-1]).mean(-1)[far[1:] & far[:-1]]
    return float(np.concatenate([dx, dy]).mean())


def test_soft_inpainting_leaves_no_visible_seam(engine):
    base = dict(prompt="a red circle on a blue background", steps=10, width=64, height=64, sampler_name="Euler a",
                save_images=False)
    init = engine.generate(GenerationRequest(seed=3, **base)).images[0].convert("RGB")
    mask = Image.new("L", init.size, 0)
    mask.paste(255, BOX)
    soft_seams, soft_typical, pasted_seams, pasted_typical = [], [], [], []
    for seed in (1, 2, 3):
        soft = engine.generate(GenerationRequest(
            seed=seed, init_image=init, mask=mask, mask_blur=MASK_BLUR, denoising_strength=0.75,
            addons={"soft_inpainting": {"enabled": True}}, **base)).images[0].convert("RGB")
        pixels = np.asarray(soft, dtype=np.float64)
        soft_seams.append(seam(pixels))
        soft_typical.append(typical_step(pixels))
        # The contrast: a differently coloured generated patch pasted with a hard edge, no blending.
        other = engine.generate(GenerationRequest(
            seed=seed, **{**base, "prompt": "a yellow square on a green background"})).images[0].convert("RGB")
        pasted = init.copy()
        pasted.paste(other.crop(BOX), BOX[:2])
        pixels = np.asarray(pasted, dtype=np.float64)
        pasted_seams.append(seam(pixels))
        pasted_typical.append(typical_step(pixels))
    assert np.mean(soft_seams) <= np.mean(soft_typical) + SEAM_MARGIN
    assert np.mean(pasted_seams) > np.mean(pasted_typical) + 10 * SEAM_MARGIN  # the measure sees a hard seam
