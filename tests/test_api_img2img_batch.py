"""img2img Batch from folders over HTTP: input, mask and output folders, per-image PNG info, the path policy."""
from PIL import Image, PngImagePlugin

from test_api_support import world  # noqa: F401  (fixture)


def _write(path, infotext=None, colour=(10, 200, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if infotext:
        info.add_text("parameters", infotext)
    Image.new("RGB", (16, 16), colour).save(path, pnginfo=info)


def test_every_image_of_the_folder_runs_with_its_mask_and_png_info(world):
    outdir = world.services.settings.outdir
    _write(outdir / "in" / "a.png", "a blue square\nSteps: 3, Sampler: Euler, CFG scale: 4, Seed: 7, Size: 16x16")
    _write(outdir / "in" / "b.png")
    _write(outdir / "masks" / "b.png", colour=(255, 255, 255))
    body = {"input_dir": str(outdir / "in"), "inpaint_mask_dir": str(outdir / "masks"),
            "output_dir": str(outdir / "out"), "use_png_info": True, "width": 16, "height": 16, "steps": 2}
    response = world.client.post("/api/v1/img2img-batch", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["processed"] == ["a.png", "b.png"]
    assert sorted(p.split("/")[-1] for p in data["files"]) == ["a.png", "b.png"]
    assert (outdir / "out" / "a.png").exists() and (outdir / "out" / "b.png").exists()
    first, second = (request for _, request in world.engine.requests[-2:])
    assert (first.prompt, first.seed, first.mode) == ("a blue square", 7, "img2img")
    assert first.steps == 2  # the body's own fields win over the image's infotext
    assert second.mode == "inpaint" and not first.save_images


def test_folders_outside_the_allowed_roots_are_refused(world, tmp_path):
    outside = tmp_path / "elsewhere"
    _write(outside / "x.png")
    inside = world.services.settings.outdir / "in"
    _write(inside / "x.png")
    for body, field in (({"input_dir": str(outside)}, "input_dir"),
                        ({"input_dir": str(inside), "output_dir": str(outside)}, "output_dir"),
                        ({"input_dir": str(inside), "inpaint_mask_dir": "/etc"}, "inpaint_mask_dir"),
                        ({"input_dir": str(inside / ".." / ".." / "elsewhere")}, "input_dir")):
        response = world.client.post("/api/v1/img2img-batch", json=body)
        assert response.status_code == 422 and response.json()["field"] == field, response.text
    assert world.engine.requests == []
