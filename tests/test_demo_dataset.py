"""The demo world's generator and the pixel classifier that scores generated images."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from webui.demo import classify, shapes


def test_same_seed_gives_same_image_and_caption():
    first, second, other = shapes.sample(42), shapes.sample(42), shapes.sample(43)
    assert np.array_equal(first.image, second.image) and first.caption == second.caption
    assert not np.array_equal(first.image, other.image)
    images_a, samples_a = shapes.batch(7, 20)
    images_b, samples_b = shapes.batch(7, 20)
    assert np.array_equal(images_a, images_b)
    assert [s.caption for s in samples_a] == [s.caption for s in samples_b]


def test_captions_name_the_drawn_labels_and_colours_differ():
    images, samples = shapes.batch(3, 200)
    assert images.shape == (200, 64, 64, 3) and images.dtype == np.uint8
    seen = set()
    for image, item in zip(images, samples):
        scene = item.scene
        assert item.caption.endswith(f" {scene.colour} {scene.shape} on a {scene.background} background") or \
            item.caption.endswith(f" {scene.colour} {scene.shape} on an {scene.background} background")
        assert scene.colour != scene.background
        assert tuple(image[0, 0]) == shapes.COLOURS[scene.background]
        assert tuple(image[int(scene.cy), int(scene.cx)]) == shapes.COLOURS[scene.colour]
        seen.add(scene.shape)
    assert seen == set(shapes.SHAPES)


def test_every_caption_word_is_one_clip_token():
    from webui.models.tokenizers import load_clip_tokenizer

    tokenizer = load_clip_tokenizer("clip_l")
    for word in [*shapes.COLOURS, *shapes.SHAPES, "a", "an", "on", "background"]:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word


def test_classifier_scores_every_generated_image_right():
    images, samples = shapes.batch(11, 300)
    wrong = [(s.labels, classify.classify(im).labels) for im, s in zip(images, samples)
             if classify.classify(im).labels != s.labels]
    assert wrong == []


def test_classifier_survives_the_blur_a_decoder_adds():
    images, samples = shapes.batch(12, 120)
    for image, item in zip(images, samples):
        blurred = Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.5))
        assert classify.classify(blurred).labels == item.labels


def test_captions_use_an_before_vowels():
    assert shapes.caption_for("circle", "orange", "blue") == "an orange circle on a blue background"
    assert shapes.caption_for("square", "red", "orange") == "a red square on an orange background"


def test_plain_image_has_no_shape():
    plain = np.full((64, 64, 3), shapes.COLOURS["green"], dtype=np.uint8)
    result = classify.classify(plain)
    assert result.shape is None and result.background == "green"


def test_colour_share_measures_the_named_colour():
    item = shapes.sample(5)
    share = classify.colour_share(item.image, item.scene.colour)
    mask = shapes.shape_mask(item.scene.shape, item.scene.cx, item.scene.cy, item.scene.half)
    assert share == pytest.approx(mask.mean())
    assert classify.colour_share(item.image, item.scene.background) == pytest.approx(1 - mask.mean())


def test_outlined_style_draws_a_dark_ring_around_the_shape():
    rng_seed = next(s for s in range(100) if "black" not in shapes.sample(s).labels.values())
    plain, outlined = shapes.sample(rng_seed), shapes.sample(rng_seed, outlined=True)
    assert plain.labels == outlined.labels
    assert classify.colour_share(plain.image, "black") == 0
    assert classify.colour_share(outlined.image, "black") > 0.03
    scene = plain.scene
    inside = shapes.shape_mask(scene.shape, scene.cx, scene.cy, scene.half)
    assert np.array_equal(outlined.image[inside], plain.image[inside])
    dark = classify.nearest_colour_names(outlined.image.astype(float)) == list(shapes.COLOURS).index("black")
    near = shapes.shape_mask("square", scene.cx, scene.cy, scene.half + 3 * shapes.OUTLINE_WIDTH)
    assert dark.any() and not (dark & ~near).any()


def test_bad_names_are_rejected():
    with pytest.raises(ValueError, match="unknown shape"):
        shapes.caption_for("hexagon", "red", "blue")
    with pytest.raises(ValueError, match="unknown colour"):
        shapes.caption_for("circle", "teal", "blue")
    with pytest.raises(ValueError, match="unknown colour"):
        classify.colour_share(np.zeros((8, 8, 3), np.uint8), "teal")
    with pytest.raises(ValueError, match="RGB"):
        classify.classify(np.zeros((8, 8), np.uint8))


# ---------------------------------------------------------------- the shipped files
SHIPPED = Path(__file__).resolve().parents[1] / "models"
CHECKPOINT = SHIPPED / "Stable-diffusion" / "demo-shapes.safetensors"
LORA = SHIPPED / "Lora" / "demo-outline.safetensors"


def _pipeline():
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from webui.models.loader import load_checkpoint_file

    torch.set_num_threads(1)
    parts = load_checkpoint_file(CHECKPOINT, "cpu", torch.float32)
    pipe = StableDiffusionPipeline(
        vae=parts.vae, text_encoder=parts.text_encoders[0], tokenizer=parts.tokenizers[0], unet=parts.unet,
        scheduler=DDIMScheduler.from_config(parts.scheduler_config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generate(pipe, captions, seed=0):
    import torch

    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(captions))]
    out = pipe(captions, height=64, width=64, num_inference_steps=12, guidance_scale=3.0,
               generator=generators, output_type="np")
    return (out.images * 255).round().astype(np.uint8)


def test_shipped_demo_model_draws_what_the_prompt_asks():
    scenes = [("circle", "red", "blue"), ("square", "yellow", "purple"), ("triangle", "white", "green"),
              ("square", "black", "orange"), ("triangle", "blue", "yellow"), ("circle", "green", "white")]
    images = _generate(_pipeline(), [shapes.caption_for(*s) for s in scenes])
    got = [tuple(classify.classify(im).labels.values()) for im in images]
    assert got == scenes


def _merge_kohya_lora(modules: dict, path: Path, weight: float) -> int:
    """Add a kohya LoRA's deltas to the modules it names; returns how many it touched."""
    import torch
    from safetensors.torch import load_file

    state = load_file(str(path))
    touched = 0
    for key in {k.rsplit(".", 2)[0] for k in state if k.endswith(".lora_down.weight")}:
        down = state[f"{key}.lora_down.weight"].float()
        up = state[f"{key}.lora_up.weight"].float()
        scale = float(state[f"{key}.alpha"]) / down.shape[0]
        module = modules[key]
        delta = (up.flatten(1) @ down.flatten(1)).reshape(module.weight.shape)
        with torch.no_grad():
            module.weight += weight * scale * delta
        touched += 1
    return touched


def test_demo_lora_outlines_shapes_more_as_its_weight_grows():
    from safetensors import safe_open

    with safe_open(str(LORA), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_network_module"] == "networks.lora" and metadata["ss_base_model_version"] == "sd_v1"
    scenes = [("circle", "red", "blue"), ("square", "yellow", "purple"), ("triangle", "white", "green"),
              ("circle", "orange", "blue")]
    captions = [shapes.caption_for(*s) for s in scenes]
    pipe = _pipeline()
    modules = {"lora_unet_" + n.replace(".", "_"): m for n, m in pipe.unet.named_modules()}
    modules.update({"lora_te_" + ("" if n.startswith("text_model.") else "text_model_") + n.replace(".", "_"): m
                    for n, m in pipe.text_encoder.named_modules()})
    black = [classify.colour_share(im, "black") for im in _generate(pipe, captions)]
    assert _merge_kohya_lora(modules, LORA, 0.75) > 0
    most = [classify.colour_share(im, "black") for im in _generate(pipe, captions)]
    _merge_kohya_lora(modules, LORA, 0.25)
    full = [classify.colour_share(im, "black") for im in _generate(pipe, captions)]
    # none of these captions asks for black: every black pixel is outline
    assert np.mean(black) < 0.005
    assert np.mean(black) < np.mean(most) < np.mean(full)
    assert np.mean(full) > 0.04
