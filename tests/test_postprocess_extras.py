"""A1111 Extras: factor/size/crop, second upscaler blend, order with face restoration, infotext fields, interruption."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from webui.config import Settings
from webui.postprocess.extras import run_extras, scale_to_size
from webui.postprocess.upscalers import UpscalerRegistry
from webui.schemas import ExtrasRequest, InvalidRequest, JobInterrupted, NotFound, NullControl


def picture(width=30, height=20, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


class RecordingFaces:
    """Stands in for FaceRestorers at the edge: records what it was given and marks the image."""

    def __init__(self):
        self.calls = []

    def model_path(self, name):
        return name

    def restore(self, image, name, visibility, codeformer_weight=0.5, should_stop=None):
        self.calls.append((name, image.size, visibility, codeformer_weight))
        return image


class StopAfter(NullControl):
    def __init__(self, images):
        self.remaining = images

    def interrupted(self):
        self.remaining -= 1
        return self.remaining < 0


@pytest.fixture
def upscalers(tmp_path):
    return UpscalerRegistry(Settings(models_dir=tmp_path, device="cpu"))


def test_scale_by_factor_with_infotext(upscalers):
    [(image, info)] = run_extras(ExtrasRequest(images=[picture()], upscaler_1="Lanczos", upscaling_resize=2.0), upscalers, RecordingFaces())
    assert image.size == (60, 40) and image.mode == "RGB"
    assert info == {"Postprocess upscale by": 2, "Postprocess upscaler": "Lanczos"}


def test_scale_to_size_with_and_without_crop(upscalers):
    request = ExtrasRequest(images=[picture()], resize_mode=1, upscaling_resize_w=64, upscaling_resize_h=64, upscaling_crop=True, upscaler_1="Lanczos")
    [(image, info)] = run_extras(request, upscalers, RecordingFaces())
    assert image.size == (64, 64)
    assert info == {"Postprocess upscale to": "64x64", "Postprocess crop to": "64x64", "Postprocess upscaler": "Lanczos"}
    request.upscaling_crop = False
    [(image, info)] = run_extras(request, upscalers, RecordingFaces())
    assert image.size == (96, 64)  # covers 64x64, keeps the 3:2 aspect
    assert "Postprocess crop to" not in info


def test_scale_to_size_crops_the_centre():
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 10, 20))  # a red left quarter, cut away by a centred square crop
    out = scale_to_size(image, 20, 20, crop=True)
    assert out.size == (20, 20)
    assert np.asarray(out)[:, :, 0].max() < 60


def test_second_upscaler_is_blended_by_visibility(upscalers):
    source = picture()
    request = ExtrasRequest(images=[source], upscaler_1="Lanczos", upscaler_2="Nearest", extras_upscaler_2_visibility=0.25, upscaling_resize=2)
    [(image, info)] = run_extras(request, upscalers, RecordingFaces())
    expected = Image.blend(source.resize((60, 40), Image.Resampling.LANCZOS), source.resize((60, 40), Image.Resampling.NEAREST), 0.25)
    assert np.array_equal(np.asarray(image), np.asarray(expected))
    assert info["Postprocess upscaler 2"] == "Nearest"


def test_no_first_upscaler_means_no_upscaling(upscalers):
    [(image, info)] = run_extras(ExtrasRequest(images=[picture()], upscaler_1="None", upscaling_resize=4), upscalers, RecordingFaces())
    assert image.size == (30, 20) and info == {}


@pytest.mark.parametrize("upscale_first, seen_size", [(True, (60, 40)), (False, (30, 20))])
def test_order_of_upscale_and_face_restoration(upscalers, upscale_first, seen_size):
    faces = RecordingFaces()
    request = ExtrasRequest(
        images=[picture()], upscaler_1="Lanczos", upscaling_resize=2, codeformer_visibility=0.7, codeformer_weight=0.3, upscale_first=upscale_first
    )
    [(_, info)] = run_extras(request, upscalers, faces)
    assert faces.calls == [("CodeFormer", seen_size, 0.7, 0.3)]
    assert info["CodeFormer visibility"] == 0.7 and info["CodeFormer weight"] == 0.3


def test_interrupt_between_images_keeps_finished_ones(upscalers):
    request = ExtrasRequest(images=[picture(seed=i) for i in range(3)], upscaler_1="Lanczos")
    with pytest.raises(JobInterrupted) as stopped:
        run_extras(request, upscalers, RecordingFaces(), control=StopAfter(1))
    assert len(stopped.value.partial) == 1


def test_bad_requests_fail_before_any_work(upscalers):
    faces = RecordingFaces()
    with pytest.raises(NotFound, match="4x-UltraSharp"):
        run_extras(ExtrasRequest(images=[picture()], upscaler_1="Lanczos", upscaler_2="4x-UltraSharp"), upscalers, faces)
    with pytest.raises(InvalidRequest):
        run_extras(ExtrasRequest(images=[picture()], gfpgan_visibility=1.5), upscalers, faces)
    with pytest.raises(InvalidRequest):
        run_extras(ExtrasRequest(images=[]), upscalers, faces)
    assert faces.calls == []
