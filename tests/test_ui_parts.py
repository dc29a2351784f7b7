"""UI pieces without a browser: requests built by field name, masks from painted layers, folder limits."""
from __future__ import annotations

import pytest
from PIL import Image

pytest.importorskip("gradio")

from webui.config import Settings  # noqa: E402
from webui.schemas import GenerationRequest, InvalidRequest  # noqa: E402
from webui.ui import extras, inpaint, params  # noqa: E402


def test_request_fields_cast_widget_values_by_field_name():
    steps, cfg, seed, restore = object(), object(), object(), object()
    fields = {"steps": steps, "cfg_scale": cfg, "seed": seed, "restore_faces": restore, "_random_seed": object()}
    values = {steps: 12.0, cfg: 6, seed: None, restore: 1}
    named = params.request_fields(fields, values)
    assert named == {"steps": 12, "cfg_scale": 6.0, "restore_faces": True}
    request = GenerationRequest(**named)
    assert isinstance(request.steps, int) and request.seed == -1


def test_request_fields_reject_text_in_a_number_field():
    steps = object()
    with pytest.raises(InvalidRequest) as info:
        params.request_fields({"steps": steps}, {steps: "many"})
    assert info.value.field == "steps"


def test_mask_is_the_union_of_painted_alpha_at_image_size():
    layer = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    layer.putpixel((3, 4), (255, 255, 255, 40))
    other = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    for xy in ((30, 2), (31, 2), (30, 3), (31, 3)):  # a 2x2 dab: one pixel at half size
        other.putpixel(xy, (255, 0, 0, 255))
    mask = inpaint.mask_from_layers([layer, other], (20, 10))
    assert mask.size == (20, 10) and mask.mode == "L"
    assert mask.getpixel((3, 4)) == 255 and mask.getpixel((15, 1)) == 255
    assert sum(1 for v in mask.getdata() if v) == 2


def test_inpaint_fields_flatten_background_and_prefer_uploaded_mask():
    background = Image.new("RGBA", (8, 8), (10, 20, 30, 255))
    painted = Image.new("RGBA", (8, 8), (255, 255, 255, 255))
    uploaded = Image.new("L", (8, 8), 0)
    fields = inpaint.inpaint_fields({"editor": {"background": background, "layers": [painted]},
                                     "mask_upload": uploaded, "inpaint_area": 1}, {"prompt": "x"})
    assert fields["init_image"].mode == "RGB" and fields["init_image"].getpixel((0, 0)) == (10, 20, 30)
    assert fields["mask"].getextrema() == (0, 0)  # the upload wins over the paint
    assert fields["inpaint_full_res"] is True
    assert GenerationRequest(**fields).mode == "inpaint"


def test_inpaint_without_an_image_is_a_typed_error():
    with pytest.raises(InvalidRequest):
        inpaint.inpaint_fields({"editor": None}, {})


def test_extras_folder_must_be_inside_allowed_folders(tmp_path):
    settings = Settings(outdir=tmp_path / "outputs")
    inside = settings.outdir / "to-upscale"
    inside.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(inside / "a.png")
    images, names = extras.images_from_folder(settings, str(inside))
    assert names == ["a.png"] and images[0].size == (4, 4)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(InvalidRequest):
        extras.images_from_folder(settings, str(outside))
    with pytest.raises(InvalidRequest):
        extras.images_from_folder(settings, str(inside / ".." / ".." / "elsewhere"))


def build_fake_ui(tmp_path):
    """The whole UI over a fake engine and two fake checkpoints: (gradio Blocks, catalog)."""
    from tests.browser.fake_stack import FakeEngine, FakeModels, write_fake_checkpoints
    from webui.catalog import Catalog
    from webui.options import Options
    from webui.services import Services
    from webui.ui import build_ui

    settings = Settings(models_dir=tmp_path / "models", outdir=tmp_path / "outputs")
    write_fake_checkpoints(settings.model_folder("Stable-diffusion"))
    catalog = Catalog(settings)
    catalog.refresh()
    models = FakeModels(catalog)
    services = Services(settings=settings, catalog=catalog, models=models, engine=FakeEngine(settings, models),
                        queue=None, options=Options(None))
    return build_ui(services), catalog


def test_build_ui_gives_every_widget_the_tests_rely_on(tmp_path):
    demo, catalog = build_fake_ui(tmp_path)
    ids = {block.elem_id for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    for tab in ("txt2img", "img2img", "inpaint"):
        assert {f"{tab}_prompt", f"{tab}_generate", f"{tab}_gallery", f"{tab}_infotext", f"{tab}_seed",
                f"{tab}_interrupt", f"{tab}_send_to_img2img"} <= ids
    assert {"setting_sd_model_checkpoint", "img2img_image", "inpaint_editor", "extras_image", "pnginfo_image",
            "queue_table"} <= ids
    assert {"img2img_batch_tab", "img2img_batch_input_dir", "img2img_batch_output_dir",
            "img2img_batch_inpaint_mask_dir", "img2img_batch_use_png_info"} <= ids  # A1111's Batch sub-tab
    # Every tooltip names a widget that exists (a renamed button would silently lose its tip).
    from webui.ui.tooltips import tips_by_id

    assert set(tips_by_id()) - ids == set()
    restore = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "txt2img_restore_faces")
    assert "codeformer-v0.1.0.pth" in restore.info and "Codeformer" in restore.info  # no weights installed here
    dropdown = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "setting_sd_model_checkpoint")
    assert [c[0] for c in dropdown.choices] == ["tiny-a.ckpt [" + catalog.checkpoints()[0].short_hash + "]",
                                                 "tiny-b.ckpt [" + catalog.checkpoints()[1].short_hash + "]"]


def test_importing_webui_ui_does_not_import_gradio():
    import subprocess
    import sys

    code = "import sys, webui.ui; assert 'gradio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_seed_extras_are_off_unless_the_extra_box_is_ticked():
    named = {"seed": 5, "subseed": 9, "subseed_strength": 0.4, "seed_resize_from_w": 256, "seed_resize_from_h": 128}
    off = params.without_seed_extras(named)
    assert (off["subseed_strength"], off["seed_resize_from_w"], off["seed_resize_from_h"]) == (0.0, 0, 0)
    assert off["seed"] == 5 and off["subseed"] == 9 and named["subseed_strength"] == 0.4
