"""The queue over the real engine on a tiny random checkpoint: progress, preview, interrupt and skip."""
from __future__ import annotations

import time

import pytest

from webui.catalog import Catalog
from webui.engine.engine import Engine
from webui.jobs import JobQueue
from webui.models.manager import ModelManager
from webui.schemas import GenerationRequest, JobStatus


def txt(**fields) -> GenerationRequest:
    base = dict(prompt="a red circle", steps=4, width=64, height=64, seed=7, sampler_name="Euler", save_images=False)
    base.update(fields)
    return GenerationRequest(**base)


@pytest.fixture
def queue(settings):
    catalog = Catalog(settings)
    catalog.refresh()
    engine = Engine(settings, catalog, ModelManager(settings, catalog))
    with JobQueue(engine.run, db_path=settings.queue_db_path, preview_every=2) as q:
        yield q


def wait_for(queue, condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = queue.current()
        if job is not None and job.progress is not None and condition(job.progress):
            return job
        time.sleep(0.002)
    raise AssertionError("the running job never reached the expected progress")


def test_progress_and_preview_reach_subscribers(queue):
    job = queue.submit("txt2img", txt(n_iter=2))
    with queue.subscribe(job.id) as events:
        seen = list(events)
    assert seen[-1].type == "finished" and seen[-1].job.status == JobStatus.SUCCEEDED
    assert len(seen[-1].job.result.images) == 2
    steps = [(e.job.progress.image_index, e.job.progress.step) for e in seen if e.type == "progress"]
    assert (0, 4) in steps and (1, 4) in steps and steps == sorted(steps)
    previews = [e.job.progress.preview for e in seen if e.type == "progress" and e.job.progress.step == 2]
    assert previews and previews[0] is not None and previews[0].size[0] > 0


def test_interrupt_keeps_the_finished_image_and_the_interrupted_one(queue):
    job = queue.submit("txt2img", txt(n_iter=3, steps=30))
    wait_for(queue, lambda p: p.image_index == 1 and p.step >= 1)
    queue.interrupt(job.id)
    done = queue.wait(job.id, 60)
    assert done.status == JobStatus.INTERRUPTED
    # A1111: the interrupted image is decoded from its latest prediction; the third never starts
    assert len(done.result.images) == 2 and all(image.size == (64, 64) for image in done.result.images)


def test_skip_keeps_the_partial_image_of_the_current_batch_and_goes_on(queue):
    job = queue.submit("txt2img", txt(n_iter=3, steps=30))
    wait_for(queue, lambda p: p.image_index == 1 and p.step >= 1)
    queue.skip(job.id)
    done = queue.wait(job.id, 60)
    assert done.status == JobStatus.SUCCEEDED
    assert len(done.result.images) == 3
