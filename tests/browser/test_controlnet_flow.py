"""ControlNet in the real app: drop a control image, see the preprocessor preview, generate with the unit."""
from __future__ import annotations

import io
import time

from PIL import Image, ImageDraw

from tests.browser import ui


def _demo_controlnet(path) -> None:
    """A random ControlNet shaped for the demo model's UNet (its VAE downsamples by 4: two hint strides)."""
    from diffusers import UNet2DConditionModel

    from tools.train_demo_model import unet_config
    from webui.models.random_controlnet import random_controlnet, write_controlnet

    write_controlnet(path, random_controlnet(UNet2DConditionModel(**unet_config()), embedding=(16, 32, 96)))


def _preview(page) -> Image.Image:
    src = page.eval_on_selector("#txt2img_controlnet_0_preview img", "e => e.src")
    return Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB")


def test_real_controlnet_drop_preview_and_generate(real_page, real_app, tmp_path):
    page = real_page
    _demo_controlnet(real_app.models_dir / "ControlNet" / "cn-flow-test.safetensors")
    control = tmp_path / "silhouette.png"
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).ellipse((16, 16, 47, 47), fill="black")
    image.save(control)

    page.click("#txt2img_controlnet")
    ui.drop_file(page, "#txt2img_controlnet_0_image button[aria-dropeffect]", control)
    page.wait_for_selector("#txt2img_controlnet_0_preview img")
    page.wait_for_function("() => document.querySelector('#txt2img_controlnet_0_enabled input').checked")
    ui.choose(page, "txt2img_controlnet_0_module", "invert (from white bg & black line)")
    # The preview follows the preprocessor: the drawing's black disc comes back white on black.
    deadline = time.monotonic() + 20
    while True:
        preview = _preview(page)
        if preview.getpixel((32, 32)) == (255, 255, 255) or time.monotonic() > deadline:
            break
        page.wait_for_timeout(250)
    assert preview.getpixel((32, 32)) == (255, 255, 255) and preview.getpixel((2, 2)) == (0, 0, 0)

    page.click("#txt2img_controlnet_0_refresh")
    ui.choose(page, "txt2img_controlnet_0_model", "cn-flow-test")
    ui.fill_text(page, "txt2img_prompt", "a red circle")
    ui.set_number(page, "txt2img_steps", 2)
    ui.set_number(page, "txt2img_width", 64)
    ui.set_number(page, "txt2img_height", 64)
    assert "Done" in ui.generate(page, "txt2img")
    infotext = ui.textbox_value(page, "txt2img_infotext")
    assert 'ControlNet 0: "Module: invert (from white bg & black line), Model: cn-flow-test [' in infotext
