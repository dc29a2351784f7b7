"""The img2img tab's Batch sub-tab: one queued job per image of a folder, results in the output folder."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

gr = pytest.importorskip("gradio")

from PIL import Image, PngImagePlugin  # noqa: E402

from fake_engine import FakeEngine  # noqa: E402
from webui.config import Settings  # noqa: E402
from webui.jobs import JobQueue  # noqa: E402
from webui.schemas import GenerationRequest  # noqa: E402
from webui.security.identity import OWNER_HEADER  # noqa: E402
from webui.ui import img2img, results  # noqa: E402


@pytest.fixture
def world(tmp_path):
    settings = Settings(models_dir=tmp_path / "models", outdir=tmp_path / "outputs")
    engine = FakeEngine(step_seconds=0.0, size=8)
    queue = JobQueue(engine.run, db_path=tmp_path / "queue.db").start()
    with gr.Blocks():
        panel = results.build_result_panel("img2img")
    yield SimpleNamespace(services=SimpleNamespace(queue=queue, options=None, settings=settings),
                          engine=engine, panel=panel, outdir=settings.outdir)
    queue.stop()


def _write(path, colour=(10, 200, 10), infotext=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if infotext:
        info.add_text("parameters", infotext)
    Image.new("RGB", (16, 16), colour).save(path, pnginfo=info)


def _generate(world, own: dict) -> list[str]:
    """Press Generate with the Batch sub-tab open; the status lines shown, in order."""
    def build():
        return GenerationRequest(prompt="a field", steps=2, width=16, height=16)

    browser = SimpleNamespace(headers={OWNER_HEADER: "me"}, session_hash="s")
    updates = img2img.run_single_or_batch(world.panel, world.services, build, browser, {"batch_mode": True, **own})
    return [update[world.panel.status] for update in updates if world.panel.status in update]


def test_every_image_of_the_folder_becomes_one_job_and_lands_in_the_output_folder(world):
    _write(world.outdir / "in" / "a.png", infotext="at dusk\nSteps: 3, Sampler: Euler, Seed: 7, Size: 16x16")
    _write(world.outdir / "in" / "b.png")
    _write(world.outdir / "masks" / "b.png", colour=(255, 255, 255))
    statuses = _generate(world, {"batch_input_dir": str(world.outdir / "in"),
                                 "batch_inpaint_mask_dir": str(world.outdir / "masks"),
                                 "batch_output_dir": str(world.outdir / "out"), "batch_use_png_info": True})
    jobs = world.services.queue.list(owner="me")
    assert len(jobs) == 2 and all(job.status == "succeeded" for job in jobs)
    assert sorted(job.request.mask is not None for job in jobs) == [False, True]  # b.png ran as inpaint
    assert sorted(job.request.prompt for job in jobs) == ["a field", "a field at dusk"]  # a.png's PNG info appended
    assert not any(job.request.save_images for job in jobs)  # written to the output folder instead
    assert sorted(p.name for p in (world.outdir / "out").iterdir()) == ["a.png", "b.png"]
    assert any(s.startswith("Batch image 1/2 (a\\.png)") for s in statuses)
    assert any(s.startswith("Batch image 2/2 (b\\.png)") for s in statuses)
    assert statuses[-1].startswith("Batch done: 2 image(s) processed")


def test_a_folder_outside_the_allowed_roots_or_an_empty_one_gives_a_message_and_no_job(world, tmp_path):
    _write(tmp_path / "elsewhere" / "x.png")
    (world.outdir / "empty").mkdir(parents=True)
    outside = _generate(world, {"batch_input_dir": str(tmp_path / "elsewhere")})
    empty = _generate(world, {"batch_input_dir": str(world.outdir / "empty")})
    assert outside[-1].startswith("**Error:**") and "input\\_dir must be inside" in outside[-1]
    assert empty[-1].startswith("**Error:**") and "holds no images" in empty[-1]
    assert world.services.queue.list(owner="me") == [] and world.engine.calls == []
