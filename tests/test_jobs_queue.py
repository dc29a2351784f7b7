"""The job queue's semantics with the fake engine: order, one job at a time, interrupt, skip, cancel, failures."""
from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.fake_engine import FakeEngine
from webui.jobs import JobQueue, NotYourJob
from webui.schemas import ExtrasRequest, GenerationRequest, GenerationResult, InvalidRequest, JobStatus, NotFound, QueueFull


def req(prompt="a cat", steps=3, batch_size=1, **fields) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, steps=steps, batch_size=batch_size, width=64, height=64, **fields)


def wait_until(condition, timeout=10.0, interval=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def engine():
    return FakeEngine(step_seconds=0.005)


@pytest.fixture
def queue(engine, tmp_path):
    q = JobQueue(engine.run, db_path=tmp_path / "queue.sqlite3", preview_every=2)
    yield q
    q.close()


def test_jobs_run_in_submission_order_with_positions(queue, engine):
    jobs = [queue.submit("txt2img", req(f"p{i}")) for i in range(5)]
    assert [j.position for j in jobs] == [1, 2, 3, 4, 5]
    assert all(j.status == JobStatus.QUEUED for j in jobs)
    queue.start()
    for job in jobs:
        assert queue.wait(job.id, 10).status == JobStatus.SUCCEEDED
    assert engine.calls == [f"p{i}" for i in range(5)]
    assert queue.get(jobs[0].id).position is None


def test_one_job_at_a_time_under_20_concurrent_submitters(queue, engine):
    queue.start()
    ids, errors = [], []

    def submit(i):
        try:
            ids.append(queue.submit("txt2img", req(f"job{i}", steps=2), owner=f"user{i}").id)
        except Exception as exc:  # pragma: no cover - shows up as a failed assertion below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(ids)) == 20
    finished = [queue.wait(job_id, 20) for job_id in ids]
    assert all(job.status == JobStatus.SUCCEEDED for job in finished)
    assert engine.max_active == 1 and len(engine.calls) == 20
    spans = sorted((job.started, job.finished) for job in finished)
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), "two jobs overlapped"


def test_interrupt_stops_within_one_step_and_keeps_finished_images(engine, tmp_path):
    engine.step_seconds = 0.03
    with JobQueue(engine.run, db_path=tmp_path / "q.sqlite3") as queue:
        job = queue.submit("txt2img", req("long", steps=10, batch_size=3))
        wait_until(lambda: (queue.current() is not None and queue.current().progress.image_index == 1
                            and queue.current().progress.step >= 1))
        asked = time.monotonic()
        queue.interrupt(job.id)
        done = queue.wait(job.id, 10)
    assert done.status == JobStatus.INTERRUPTED
    assert len(done.result.images) == 1  # the first image was finished and is kept
    assert len([s for s in engine.step_log if s[0] > asked]) <= 1
    assert done.error is None


def test_interrupt_without_id_acts_on_the_running_job_and_nothing_when_idle(queue, engine):
    assert queue.interrupt() is None
    engine.step_seconds = 0.02
    queue.start()
    job = queue.submit("txt2img", req("x", steps=50))
    wait_until(lambda: queue.current() is not None)
    queue.interrupt()
    assert queue.wait(job.id, 10).status == JobStatus.INTERRUPTED


def test_skip_in_a_batch_of_4_gives_3_images(engine, tmp_path):
    engine.step_seconds = 0.02
    with JobQueue(engine.run, db_path=tmp_path / "q.sqlite3") as queue:
        job = queue.submit("txt2img", req("batch", steps=8, batch_size=4))
        wait_until(lambda: queue.current() is not None and queue.current().progress.image_index == 1)
        queue.skip()
        done = queue.wait(job.id, 10)
    assert done.status == JobStatus.SUCCEEDED
    assert len(done.result.images) == 3


def test_canceled_queued_job_never_starts(queue, engine):
    engine.step_seconds = 0.02
    queue.start()
    first = queue.submit("txt2img", req("first", steps=10))
    second = queue.submit("txt2img", req("second"))
    third = queue.submit("txt2img", req("third"))
    canceled = queue.cancel(second.id)
    assert canceled.status == JobStatus.CANCELED and canceled.position is None
    assert queue.get(third.id).position in (1, 2)  # moved up (1 once the first job is running)
    assert queue.wait(third.id, 10).status == JobStatus.SUCCEEDED
    assert queue.wait(first.id, 10).status == JobStatus.SUCCEEDED
    assert "second" not in engine.calls
    assert queue.get(second.id).status == JobStatus.CANCELED
    statuses = {j.id: j.status for j in queue.list()}
    assert statuses[second.id] == JobStatus.CANCELED


def test_failing_job_is_reported_and_the_next_one_runs(queue):
    queue.start()
    bad = queue.submit("txt2img", req("fail"))
    good = queue.submit("txt2img", req("fine", batch_size=2))
    bad_done, good_done = queue.wait(bad.id, 10), queue.wait(good.id, 10)
    assert bad_done.status == JobStatus.FAILED
    assert bad_done.error == "ValueError: the fake engine was asked to fail"
    assert good_done.status == JobStatus.SUCCEEDED and len(good_done.result.images) == 2


def test_typed_engine_error_keeps_its_message_field_and_status(queue):
    queue.start()
    done = queue.wait(queue.submit("txt2img", req("invalid")).id, 10)
    assert done.status == JobStatus.FAILED
    assert done.error == "steps must be a whole number from 1 to 150"
    assert (done.error_type, done.error_field, done.error_status) == ("InvalidRequest", "steps", 422)


def test_out_of_memory_frees_memory_and_the_next_job_runs(engine, tmp_path):
    freed = []
    with JobQueue(engine.run, db_path=tmp_path / "q.sqlite3", on_out_of_memory=lambda: freed.append(1)) as queue:
        oom = queue.submit("txt2img", req("oom"))
        after = queue.submit("txt2img", req("after"))
        oom_done, after_done = queue.wait(oom.id, 10), queue.wait(after.id, 10)
    assert oom_done.status == JobStatus.FAILED
    assert oom_done.error.startswith("out of memory: CUDA out of memory")
    assert freed == [1]
    assert after_done.status == JobStatus.SUCCEEDED


def test_owner_checks_protect_other_users_jobs(queue, engine):
    engine.step_seconds = 0.02
    queue.start()
    running = queue.submit("txt2img", req("alice's", steps=10), owner="alice")
    waiting = queue.submit("txt2img", req("alice's second"), owner="alice")
    wait_until(lambda: queue.current() is not None)
    with pytest.raises(NotYourJob):
        queue.interrupt(owner="bob")
    with pytest.raises(NotYourJob):
        queue.skip(running.id, owner="bob")
    with pytest.raises(NotYourJob):
        queue.cancel(waiting.id, owner="bob")
    assert NotYourJob.http_status == 403
    assert queue.wait(running.id, 10).status == JobStatus.SUCCEEDED
    assert queue.wait(waiting.id, 10).status == JobStatus.SUCCEEDED
    assert [j.id for j in queue.list(owner="bob")] == []
    assert {j.id for j in queue.list(owner="alice")} == {running.id, waiting.id}


def test_queue_full_and_bad_submissions(tmp_path, engine):
    queue = JobQueue(engine.run, db_path=tmp_path / "q.sqlite3", max_length=2)
    a = queue.submit("txt2img", req())
    queue.submit("txt2img", req())
    with pytest.raises(QueueFull) as info:
        queue.submit("txt2img", req())
    assert info.value.retry_after >= 1
    queue.cancel(a.id)
    queue.submit("txt2img", req())  # room again
    with pytest.raises(InvalidRequest) as info:
        queue.submit("paint", req())
    assert info.value.field == "kind"
    with pytest.raises(InvalidRequest):
        queue.submit("extras", req())
    with pytest.raises(NotFound):
        queue.get("no-such-job")
    queue.close()


def test_progress_events_with_previews_end_with_the_final_event(queue):
    queue.start()
    job = queue.submit("txt2img", req("stream", steps=4, batch_size=2))
    with queue.subscribe(job.id) as events:
        seen = list(events)
    assert seen[-1].type == "finished" and seen[-1].job.status == JobStatus.SUCCEEDED
    progress = [(e.job.progress.image_index, e.job.progress.step) for e in seen if e.type == "progress"]
    assert progress == sorted(progress) and (1, 4) in progress
    with_preview = [e for e in seen if e.type == "progress" and e.job.progress.preview is not None]
    assert with_preview and with_preview[0].job.progress.step == 2  # preview_every=2


def test_previews_off_when_preview_every_is_0(engine, tmp_path):
    with JobQueue(engine.run, db_path=None, preview_every=0) as queue:
        job = queue.submit("txt2img", req("no preview", steps=4))
        with queue.subscribe(job.id) as events:
            seen = list(events)
    assert all(e.job.progress is None or e.job.progress.preview is None for e in seen)


def test_wait_returns_the_unfinished_job_after_its_timeout(queue):
    job = queue.submit("txt2img", req())
    assert queue.wait(job.id, 0.05).status == JobStatus.QUEUED


def test_finished_jobs_and_their_images_survive_a_new_queue_on_the_same_db(engine, tmp_path):
    db = tmp_path / "q.sqlite3"
    with JobQueue(engine.run, db_path=db) as queue:
        job = queue.submit("txt2img", req("kept", batch_size=2), owner="alice")
        extras = queue.submit("extras", ExtrasRequest(images=[engine._image(0, 0)]))
        queue.wait(job.id, 10), queue.wait(extras.id, 10)
    with JobQueue(engine.run, db_path=db) as again:
        old = again.get(job.id)
        assert old.status == JobStatus.SUCCEEDED and old.owner == "alice"
        assert len(old.result.images) == 2 and old.result.images[0].size == (8, 8)
        assert old.request.prompt == "kept"
        assert len(again.get(extras.id).result.images) == 1
        data = old.to_dict(images=True)
        assert data["status"] == "succeeded" and isinstance(data["result"]["images"][0], str)
        assert old.to_dict()["result"]["images"] == []  # light view without images


def test_history_is_pruned_and_old_results_dropped(engine, tmp_path):
    db = tmp_path / "q.sqlite3"
    with JobQueue(engine.run, db_path=db, keep_history=5, keep_results=2) as queue:
        ids = [queue.submit("txt2img", req(f"h{i}", steps=1)).id for i in range(8)]
        for job_id in ids:
            queue.wait(job_id, 10)
    with JobQueue(engine.run, db_path=db) as again:
        assert [j.id for j in again.list()] == ids[-5:]
        assert again.get(ids[-1]).result is not None
        assert again.get(ids[-3]).result is None
        with pytest.raises(NotFound):
            again.get(ids[0])


def test_clean_stop_interrupts_the_running_job_and_keeps_the_queue(engine, tmp_path):
    db = tmp_path / "q.sqlite3"
    engine.step_seconds = 0.02
    queue = JobQueue(engine.run, db_path=db).start()
    running = queue.submit("txt2img", req("running", steps=100))
    waiting = queue.submit("txt2img", req("waiting"))
    wait_until(lambda: queue.current() is not None)
    assert queue.stop(10)
    stopped = queue.get(running.id)
    assert stopped.status == JobStatus.INTERRUPTED and stopped.error == "server stopped"
    assert queue.get(waiting.id).status == JobStatus.QUEUED
    queue.close()
    with JobQueue(engine.run, db_path=db) as again:
        assert again.wait(waiting.id, 10).status == JobStatus.SUCCEEDED
    assert engine.calls == ["running", "waiting"]


def test_torch_out_of_memory_error_is_recognised(tmp_path):
    import torch

    def runner(kind, request, control):
        if request.prompt == "big":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return GenerationResult()

    freed = []
    with JobQueue(runner, db_path=None, on_out_of_memory=lambda: freed.append(True)) as queue:
        big = queue.wait(queue.submit("txt2img", req("big")).id, 10)
        small = queue.wait(queue.submit("txt2img", req("small")).id, 10)
    assert big.status == JobStatus.FAILED and big.error_type == "OutOfMemoryError"
    assert big.error == "out of memory: CUDA out of memory. Tried to allocate 20.00 GiB"
    assert freed == [True] and small.status == JobStatus.SUCCEEDED


def test_saved_images_are_kept_by_path_not_copied_into_the_database(tmp_path):
    engine = FakeEngine(step_seconds=0.001, outdir=tmp_path / "outputs")
    db = tmp_path / "q.sqlite3"
    with JobQueue(engine.run, db_path=db) as queue:
        job = queue.wait(queue.submit("txt2img", req("saved", batch_size=2, save_images=True)).id, 10)
    assert len(job.result.saved_paths) == 2
    with closing(sqlite3.connect(db)) as connection:
        stored = connection.execute("SELECT result FROM jobs WHERE id = ?", (job.id,)).fetchone()[0]
    assert "__image__" not in stored  # no base64 copy of what is on disk
    with JobQueue(engine.run, db_path=db) as again:
        images = again.get(job.id).result.images
        assert [im.size for im in images] == [(8, 8), (8, 8)]
        assert images[1].getpixel((0, 0)) == job.result.images[1].getpixel((0, 0))
        Path(job.result.saved_paths[0]).unlink()
        partial = again.get(job.id).result
        assert len(partial.images) == 1 and "gone" in partial.warnings[-1]


def test_cpu_out_of_memory_fails_the_job_like_a_gpu_one_and_the_worker_goes_on():
    freed = []

    def runner(kind, request, control):
        if request.prompt == "huge":
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 107374182400 bytes. Error code 12 (Cannot allocate memory)")
        return None

    with JobQueue(runner, db_path=None, on_out_of_memory=lambda: freed.append(1)) as queue:
        huge = queue.submit("txt2img", GenerationRequest(prompt="huge"))
        after = queue.submit("txt2img", GenerationRequest(prompt="small"))
        failed = queue.wait(huge.id, 10)
        assert failed.status == JobStatus.FAILED and failed.error_type == "OutOfMemoryError"
        assert failed.error.startswith("out of memory")
        assert queue.wait(after.id, 10).status == JobStatus.SUCCEEDED
    assert freed == [1]
