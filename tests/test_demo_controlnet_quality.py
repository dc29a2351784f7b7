"""The shipped demo ControlNet (``models/ControlNet/demo-silhouette.safetensors``, trained by
``tools/train_demo_controlnet.py``): it loads with diffusers from the file alone and puts the shape where the
silhouette is, at positions and sizes its training never showed, whatever shape and colours the prompt names.

Generation is plain diffusers (``StableDiffusionControlNetPipeline``) on the demo model's components as the
app's loader builds them; the drawn shape's centroid comes from ``webui.demo.classify``.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from webui.config import PROJECT_ROOT
from webui.demo.classify import classify, mask_centroid, shape_centroid
from webui.demo.shapes import Scene, caption_for, shape_mask, silhouette

DEMO = PROJECT_ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
DEMO_CONTROLNET = PROJECT_ROOT / "models" / "ControlNet" / "demo-silhouette.safetensors"
#: Silhouettes centred in the held-out regions, with held-out sizes; the prompt names another shape and colours.
SCENES = [
    (Scene("circle", "red", "blue", 41.5, 22.0, 13.5), caption_for("square", "yellow", "purple")),
    (Scene("square", "green", "white", 22.5, 42.0, 13.0), caption_for("triangle", "red", "black")),
    (Scene("triangle", "orange", "black", 37.0, 26.5, 14.2), caption_for("circle", "blue", "white")),
]
SEEDS = (7, 8)
STEPS, CFG = 15, 3.0


@pytest.fixture(scope="module")
def components():
    from webui.models.loader import load_checkpoint_file
    from webui.models.tokenizers import load_clip_tokenizer

    loaded = load_checkpoint_file(DEMO, "cpu", torch.float32)
    return loaded.unet, loaded.vae, loaded.text_encoders[0], load_clip_tokenizer("clip_l")


@pytest.fixture(scope="module")
def controlnet(components):
    from diffusers import ControlNetModel

    unet = components[0]
    model = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 96), conditioning_channels=3)
    state = load_file(str(DEMO_CONTROLNET))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


def metadata(path=DEMO_CONTROLNET) -> dict[str, str]:
    with safe_open(str(path), "pt") as handle:
        return handle.metadata()


def demo_scheduler_config() -> dict:
    """The noise schedule the demo checkpoint was trained with (recorded in its header)."""
    return json.loads(metadata(DEMO)["webui.architecture"])["scheduler"]


def test_shipped_file_is_a_small_fp16_diffusers_controlnet_for_the_demo_unet(components, controlnet):
    from diffusers import ControlNetModel

    assert DEMO_CONTROLNET.stat().st_size < 3_000_000
    state = load_file(str(DEMO_CONTROLNET))
    assert set(state) == set(controlnet.state_dict())
    assert {v.dtype for v in state.values()} == {torch.float16}
    # the zero convolutions learnt something: a ControlNet still at its start would change nothing
    assert state["controlnet_mid_block.weight"].abs().max() > 0
    info = metadata()
    assert info["modelspec.title"] == "demo-silhouette"
    recipe = json.loads(info["webui.demo.recipe"])
    assert recipe["from_unet"]["conditioning_embedding_out_channels"] == [16, 32, 96]
    # the config in the header alone rebuilds the same model
    rebuilt = ControlNetModel.from_config(json.loads(info["webui.controlnet.config"]))
    rebuilt.load_state_dict(state, strict=True)
    assert dict(rebuilt.config)["block_out_channels"] == list(components[0].config.block_out_channels)


def test_test_scenes_were_held_out_of_training():
    held = json.loads(metadata()["webui.demo.recipe"])["held_out"]
    for scene, _ in SCENES:
        assert any(np.hypot(scene.cx - x, scene.cy - y) <= held["radius"] for x, y in held["centres"])
        assert held["half"][0] <= scene.half < held["half"][1]


def generate(components, controlnet, prompts, controls, seeds):
    from diffusers import DDIMScheduler, StableDiffusionControlNetPipeline, StableDiffusionPipeline

    unet, vae, text_encoder, tokenizer = components
    parts = dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                 scheduler=DDIMScheduler.from_config(demo_scheduler_config()), safety_checker=None,
                 feature_extractor=None, requires_safety_checker=False)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    kwargs = dict(height=64, width=64, num_inference_steps=STEPS, guidance_scale=CFG, generator=generators,
                  output_type="np")
    with torch.no_grad():
        if controlnet is None:
            pipe = StableDiffusionPipeline(**parts)
            pipe.set_progress_bar_config(disable=True)
            images = pipe(prompts, **kwargs).images
        else:
            pipe = StableDiffusionControlNetPipeline(controlnet=controlnet, **parts)
            pipe.set_progress_bar_config(disable=True)
            images = pipe(prompts, image=controls, **kwargs).images
    return (images * 255).round().astype(np.uint8)


def errors(images, scenes):
    result = []
    for image, scene in zip(images, scenes):
        drawn = shape_centroid(image)
        target = mask_centroid(shape_mask(scene.shape, scene.cx, scene.cy, scene.half))
        result.append(64.0 if drawn is None else float(np.hypot(drawn[0] - target[0], drawn[1] - target[1])))
    return np.array(result)


def test_shape_is_drawn_where_the_silhouette_is_whatever_the_prompt_names(components, controlnet):
    scenes = [scene for scene, _ in SCENES for _ in SEEDS]
    prompts = [prompt for _, prompt in SCENES for _ in SEEDS]
    seeds = [seed for _ in SCENES for seed in SEEDS]
    controls = [Image.fromarray(silhouette(scene)) for scene in scenes]

    images = generate(components, controlnet, prompts, controls, seeds)
    steered = errors(images, scenes)
    assert steered.max() <= 4.0, steered
    # the prompt still chooses the colours
    seen = [classify(image) for image in images]
    assert [(c.colour, c.background) for c in seen] == [(p.split()[1], p.split()[-2]) for p in prompts]

    bare = errors(generate(components, None, prompts, controls, seeds), scenes)
    assert np.median(bare) > 8.0, bare  # without it the demo model puts its shape elsewhere
