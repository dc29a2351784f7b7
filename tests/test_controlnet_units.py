"""ControlNet units and preprocessors without a model: the extension's payloads, infotext, control images."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from webui.controlnet import parse_unit, units_from_infotext, units_infotext
from webui.controlnet.preprocessors import pixel_perfect_resolution, run_module
from webui.controlnet.units import ControlUnit, find_controlnet_args
from webui.infotext import format_infotext, parse_infotext
from webui.schemas import InvalidRequest


def square(size=(96, 64), fill="white", background="black") -> Image.Image:
    image = Image.new("RGB", size, background)
    ImageDraw.Draw(image).rectangle((24, 16, 71, 47), fill=fill)
    return image


def array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def no_images(value, where):
    raise AssertionError("no image expected")


def test_units_take_the_extensions_fields_older_names_and_enum_numbers():
    image = square()
    unit, warnings = parse_unit({"input_image": image, "module": "canny", "model": "m [abc]", "weight": "0.5",
                                 "resize_mode": 2, "control_mode": "ControlNet is more important",
                                 "processor_res": 256, "threshold_a": 50, "guidance_end": 0.5,
                                 "lowvram": True, "pixel_perfect": "true", "extra_thing": 1}, "u", no_images)
    assert unit.image is image and unit.weight == 0.5 and unit.resize_mode == "Resize and Fill"
    assert unit.control_mode == "ControlNet is more important" and unit.pixel_perfect and unit.active
    assert warnings == ["ControlNet: unit field(s) extra_thing not supported; ignored"]
    old, _ = parse_unit({"guessmode": True, "resize_mode": "Scale to Fit (Inner Fit)"}, "u", no_images)
    assert old.control_mode == "ControlNet is more important" and old.resize_mode == "Crop and Resize"
    assert not old.active  # the extension's default model is "None": nothing to run
    default = ControlUnit()
    assert (default.enabled, default.module, default.weight, default.resize_mode, default.guidance_start,
            default.guidance_end, default.control_mode) == (True, "none", 1.0, "Crop and Resize", 0.0, 1.0,
                                                            "Balanced")
    with pytest.raises(InvalidRequest) as bad:
        parse_unit({"resize_mode": "Stretch"}, "alwayson_scripts.controlnet.args[1]", no_images)
    assert bad.value.field == "alwayson_scripts.controlnet.args[1].resize_mode"
    assert find_controlnet_args({"ControlNet": {"args": [{}]}}) == ("ControlNet", [{}])
    assert find_controlnet_args({"Other": {"args": []}}) is None


def test_infotext_is_written_and_read_back_as_the_extension_does():
    units = [(ControlUnit(module="canny", model="x", weight=0.75, threshold_a=100, threshold_b=200), "cn [12345678]"),
             (ControlUnit(control_mode="My prompt is more important", guidance_start=0.2), "other [abcdef12]")]
    fields = units_infotext(units)
    assert fields["ControlNet 0"] == ("Module: canny, Model: cn [12345678], Weight: 0.75, Resize Mode: Crop and "
                                      "Resize, Processor Res: -1, Threshold A: 100.0, Threshold B: 200.0, Guidance "
                                      "Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced")
    text = format_infotext("a circle", "", {"Steps": 3, "Seed": 1, **fields})
    assert 'ControlNet 0: "Module: canny, Model: cn [12345678],' in text
    restored = units_from_infotext(parse_infotext(text))
    assert [u.model for u in restored] == ["cn [12345678]", "other [abcdef12]"]
    assert restored[0].module == "canny" and restored[0].weight == 0.75 and restored[0].threshold_b == 200
    assert restored[1].control_mode == "My prompt is more important" and restored[1].guidance_start == 0.2


def test_preprocessors_make_the_control_images_users_expect():
    image = square()
    assert array(run_module("none", image)).tolist() == array(image).tolist()
    assert array(run_module("invert", image))[32, 48].tolist() == [0, 0, 0]
    edges = array(run_module("canny", image, 64, 100, 200))
    assert edges.shape == (64, 96, 3) and edges.max() == 255
    assert edges[32, 48].max() == 0 and edges[:8].max() == 0  # nothing inside the square or far from it
    grey = square(fill=(150, 150, 150))
    assert array(run_module("threshold", grey, 64, 127))[32, 48].tolist() == [255] * 3
    assert array(run_module("threshold", grey, 64, 200))[32, 48].tolist() == [0] * 3
    scribble = array(run_module("scribble_xdog", image, 64, 32))
    assert scribble.max() == 255 and scribble[32, 48].max() == 0
    assert run_module("tile_resample", image, threshold_a=4).size == (24, 16)
    blurred = array(run_module("blur_gaussian", image, 64, 3))
    assert 0 < blurred[16, 24, 0] < 255
    shuffled = [array(run_module("shuffle", image, 64, seed=s)) for s in (1, 1, 2)]
    assert np.array_equal(shuffled[0], shuffled[1]) and not np.array_equal(shuffled[0], shuffled[2])
    assert run_module("canny", image, 128).size == (192, 128)  # the short side at the processor resolution
    # The colour adapter's grid: cells of 64 px, each one flat colour, the picture's colours where they were.
    halves = Image.new("RGB", (256, 128), (220, 20, 20))
    ImageDraw.Draw(halves).rectangle((128, 0, 255, 127), fill=(20, 20, 220))
    grid = array(run_module("t2ia_color_grid", halves, 128))
    assert grid.shape == (128, 256, 3) and len(np.unique(grid[:64, :64].reshape(-1, 3), axis=0)) == 1
    assert grid[10, 10, 0] > 150 > grid[10, 200, 0] and grid[10, 200, 2] > 150


def test_unknown_preprocessors_are_refused_naming_the_known_ones():
    with pytest.raises(InvalidRequest, match="unknown ControlNet preprocessor"):
        run_module("sharpen", square())


def test_pixel_perfect_matches_the_generated_size():
    image = Image.new("RGB", (1024, 512))
    assert pixel_perfect_resolution(image, 512, 512, "Crop and Resize") == 512
    assert pixel_perfect_resolution(image, 512, 512, "Resize and Fill") == 256
    assert pixel_perfect_resolution(image, 768, 768, "Just Resize") == 768


def test_control_images_fit_the_pass_and_follow_the_only_masked_crop():
    from webui.engine.controlnet import fit_control_image

    image = square()  # 96x64, white box from x 24..71, y 16..47
    stretched = fit_control_image(image, "Just Resize", 48, 32)
    assert stretched.shape == (1, 3, 32, 48) and float(stretched.max()) == 1.0 and float(stretched.min()) == 0.0
    cropped = fit_control_image(image, "Crop and Resize", 32, 32)
    assert float(cropped[0, 0, 16, 16]) == 1.0 and float(cropped[0, 0, 0, 0]) == 0.0
    # Only masked: the box of the picture the init image was cut to, at the work size.
    inside = fit_control_image(image, "Just Resize", 16, 16, crop=((30, 20, 60, 40), (96, 64)))
    assert float(inside.min()) == 1.0


def test_png_info_and_send_to_restore_the_unit_widgets():
    from webui.ui.pnginfo import infotext_fields

    text = format_infotext("a circle", "", {"Steps": 3, "Seed": 1, **units_infotext(
        [(ControlUnit(module="canny", weight=0.6, processor_res=384, control_mode="ControlNet is more important"),
          "cn [12345678]")])})
    fields = infotext_fields(text)
    assert fields["controlnet.0.enabled"] is True and fields["controlnet.0.model"] == "cn [12345678]"
    assert fields["controlnet.0.module"] == "canny" and fields["controlnet.0.weight"] == 0.6
    assert fields["controlnet.0.processor_res"] == 384
    assert fields["controlnet.0.control_mode"] == "ControlNet is more important"
    assert fields["controlnet.1.enabled"] is False and fields["controlnet.2.enabled"] is False
