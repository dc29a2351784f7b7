"""The demo world's generator and the pixel classifier that scores generated images."""
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
