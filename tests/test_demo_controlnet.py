"""The demo ControlNet's data and measure: silhouettes are the scene's geometry, the centroid measure finds
a drawn shape's centre of mass, and the scenes held out of training never reach it.

The trained model's own tests (loading, centroid within 4 px at held-out positions) are in
tests/test_demo_controlnet_quality.py and tests/test_api_demo_controlnet.py.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from webui.config import PROJECT_ROOT
from webui.demo.classify import mask_centroid, shape_centroid
from webui.demo.shapes import COLOURS, SHAPES, Scene, render, shape_mask, silhouette


@pytest.fixture(scope="module")
def tool():
    path = PROJECT_ROOT / "tools" / "train_demo_controlnet.py"
    spec = importlib.util.spec_from_file_location("train_demo_controlnet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_silhouette_is_the_scene_geometry_and_the_centroid_measure_finds_it():
    scene = Scene("triangle", "red", "white", 30.0, 35.0, 12.0)
    control = silhouette(scene)
    mask = shape_mask(scene.shape, scene.cx, scene.cy, scene.half)
    assert control.dtype == np.uint8 and control.shape == (64, 64, 3)
    assert (control[mask] == 255).all() and (control[~mask] == 0).all()
    drawn, target = shape_centroid(render(scene)), mask_centroid(mask)
    assert np.hypot(drawn[0] - target[0], drawn[1] - target[1]) < 0.5
    assert target[1] > scene.cy  # a triangle's mass sits below its box centre: the measure is not the box


def test_centroid_measure_ignores_the_background_and_reports_an_empty_image():
    for background in ("black", "white", "yellow"):
        scene = Scene("circle", "blue", background, 20.0, 44.0, 10.0)
        assert np.allclose(shape_centroid(render(scene)), (20.0, 44.0), atol=0.3)
    blank = np.zeros((64, 64, 3), np.uint8)
    blank[:] = COLOURS["green"]
    assert shape_centroid(blank) is None


def test_training_never_sees_a_held_out_centre_or_size(tool):
    scenes = tool.training_scenes(0, 3000)
    assert len(scenes) == 3000 and not any(tool.is_held_out(s) for s in scenes)
    held = tool.held_out_scenes(24, 5)
    for scene in held:  # evaluation scenes: a held-out centre AND a held-out size
        assert min(np.hypot(scene.cx - x, scene.cy - y) for x, y in tool.HELD_OUT_CENTRES) <= tool.HELD_OUT_RADIUS
        assert tool.HELD_OUT_HALF[0] <= scene.half < tool.HELD_OUT_HALF[1]
    assert {s.shape for s in held} == set(SHAPES)
    # the held-out regions lie inside the dataset's range of centres and sizes, so they are a real gap
    centres = np.array([(s.cx, s.cy) for s in scenes])
    for x, y in tool.HELD_OUT_CENTRES:
        near = np.hypot(centres[:, 0] - x, centres[:, 1] - y)
        assert near.min() > tool.HELD_OUT_RADIUS and near.min() < tool.HELD_OUT_RADIUS + 1.5
    halves = np.array([s.half for s in scenes])
    assert (halves < tool.HELD_OUT_HALF[0]).any() and (halves >= tool.HELD_OUT_HALF[1]).any()


def test_captions_that_disagree_with_the_silhouette_name_another_shape_and_colours(tool):
    rng = np.random.default_rng(1)
    scene = Scene("square", "red", "blue", 32.0, 32.0, 12.0)
    for _ in range(20):
        other = tool.other_caption(scene, rng).split()
        assert other[2] != "square" and other[1] not in ("red", "blue") and other[-2] not in ("red", "blue")
        swapped = tool.swapped_shape_caption(scene, rng).split()
        assert swapped[2] != "square" and (swapped[1], swapped[-2]) == ("red", "blue")
