"""A reloaded page takes back its jobs: the running one, then the queued ones, never another user's."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

gr = pytest.importorskip("gradio")

from webui.config import Settings  # noqa: E402
from webui.jobs import JobQueue  # noqa: E402
from webui.schemas import GenerationRequest  # noqa: E402
from webui.security.identity import OWNER_HEADER  # noqa: E402
from webui.ui import generation, results  # noqa: E402


@pytest.fixture
def services(tmp_path):
    from tests.browser.fake_stack import FakeEngine, FakeModels, write_fake_checkpoints
    from webui.catalog import Catalog

    settings = Settings(models_dir=tmp_path / "models", outdir=tmp_path / "outputs")
    write_fake_checkpoints(settings.model_folder("Stable-diffusion"))
    catalog = Catalog(settings)
    catalog.refresh()
    engine = FakeEngine(settings, FakeModels(catalog))
    queue = JobQueue(engine.run, db_path=tmp_path / "queue.db", preview_every=1).start()
    yield SimpleNamespace(queue=queue, options=None)
    queue.stop()


def request(prompt: str, steps: int) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, steps=steps, width=16, height=16, save_images=False)


def test_resume_follows_the_running_job_then_the_queued_one_and_interrupt_keeps_the_image(services):
    queue = services.queue
    running = queue.submit("txt2img", request("slow first", 40), owner="me")
    queued = queue.submit("txt2img", request("second", 2), owner="me")
    queue.submit("txt2img", request("someone else's", 2), owner="stranger")
    queue.submit("img2img", request("another tab's", 2), owner="me")
    with gr.Blocks():
        panel = results.build_result_panel("txt2img")
    browser = SimpleNamespace(headers={OWNER_HEADER: "me"}, session_hash="reloaded")
    updates = results.resume_jobs(panel, services, lambda job: generation.job_tab(job) == "txt2img", browser)
    statuses = []
    for update in updates:
        status = update.get(panel.status)
        if status:
            statuses.append(status)
        if status and ", step " in status and "running" in status:
            queue.interrupt(running.id, owner="me")  # the Interrupt button, from the reloaded page
        bar = update.get(panel.progress)
        if bar and "data-state='running'" in bar:  # "Starting…" until the worker reports its first step
            assert "step" in bar or "Starting" in bar
        if status and status.startswith("Interrupted"):
            assert len(update[panel.state]["images"]) == 1, "the image sampled so far is kept"
    finals = [s for s in statuses if s.startswith(("Done", "Interrupted", "Canceled", "**Error"))]
    assert finals == [f"Interrupted: 1 image(s), the last from where sampling stopped. (job {running.id[:8]})",
                      f"Done: 1 image(s). (job {queued.id[:8]})"]
    assert not any("someone" in s or "another" in s for s in statuses)
