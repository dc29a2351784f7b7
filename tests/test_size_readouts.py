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
