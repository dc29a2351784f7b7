"""The sizes the page shows: a dropped image sets the tab's size, hires fix says from what to what."""
from __future__ import annotations

import pytest
from PIL import Image

pytest.importorskip("gradio")

from webui.ui.size_readouts import hires_readout, size_of_image  # noqa: E402


def test_a_dropped_image_sets_the_size_in_steps_of_8():
    assert size_of_image(Image.new("RGB", (803, 597)), 512, 512) == (800, 600)
    assert size_of_image({"background": Image.new("RGBA", (40, 5000))}, 512, 512) == (64, 2048)
    assert size_of_image(None, 512, 768) == (512, 768)
    assert size_of_image({"background": None}, 512, 768) == (512, 768)


def test_hires_readout_follows_a1111():
    assert hires_readout(True, 512, 512, 2, 0, 0) == "from 512x512 to 1024x1024"
    assert hires_readout(True, 512, 768, 2, 1024, 0) == "from 512x768 to 1024x1536"  # aspect kept
    assert hires_readout(True, 512, 768, 2, 0, 1152) == "from 512x768 to 768x1152"
    assert hires_readout(False, 64, 64, 1.5, 0, 0) == "from 64x64 to 96x96 (when enabled)"


def test_clip_skip_limit_is_the_text_encoders_layer_count(tmp_path):
    import torch
    from safetensors.torch import save_file

    from webui.ui.clip_skip import DEFAULT_LAYERS, text_encoder_layers

    tensors = {f"cond_stage_model.transformer.text_model.encoder.layers.{i}.mlp.fc1.weight": torch.zeros(1)
               for i in range(6)}
    tensors["model.diffusion_model.out.0.weight"] = torch.zeros(1)
    save_file(tensors, str(tmp_path / "six.safetensors"))
    assert text_encoder_layers(tmp_path / "six.safetensors") == 6
    sdxl = {f"conditioner.embedders.0.transformer.text_model.encoder.layers.{i}.x": torch.zeros(1) for i in range(3)}
    sdxl["conditioner.embedders.1.model.transformer.resblocks.31.x"] = torch.zeros(1)  # the second encoder
    save_file(sdxl, str(tmp_path / "xl.safetensors"))
    assert text_encoder_layers(tmp_path / "xl.safetensors") == 3
    (tmp_path / "old.ckpt").write_bytes(b"not read")
    assert text_encoder_layers(tmp_path / "old.ckpt") == DEFAULT_LAYERS


def test_resize_by_scales_the_image_size_to_multiples_of_8_and_the_readout_says_from_what_to_what():
    from webui.ui.size_readouts import resize_readout, scaled_size

    image = Image.new("RGB", (640, 480))
    assert scaled_size(image, 0.5, 512, 512) == (320, 240)
    assert scaled_size(image, 1.3, 512, 512) == (832, 624)
    assert scaled_size(image, 4, 512, 512) == (2048, 1920)  # within the sliders' range
    assert scaled_size(None, 2, 512, 768) == (512, 768)
    assert resize_readout(image, 832, 624) == "Resize: from 640x480 to 832x624"
    assert resize_readout(None, 512, 512) == "Resize: drop an image first"



def test_a_sent_picture_gets_a_brush_sized_to_it():
    from webui.ui.inpaint import brush_size_for, editor_with_picture

    assert brush_size_for(1024, 512) == 51
    assert brush_size_for(16, 16) == 2
    assert brush_size_for(8000, 100) == 200
    update, size = editor_with_picture(Image.new("RGB", (640, 480)))
    assert size == 32 and update.brush.default_size == 32
