"""Only the worker touches weights, and the edges never block: reads answer while a job runs, waiting
clients hold no thread, and checkpoint switches run in order with the queued jobs."""
from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import httpx
import pytest
from fastapi import FastAPI

from test_api_support import build_world
from webui.api import mount_api
from webui.catalog import Catalog
from webui.jobs import JobQueue
from webui.models.manager import ModelManager
from webui.schemas import GenerationRequest



def run_coroutine(coro):
    """Run ``coro`` on a fresh event loop in its own thread (the browser tests leave a loop running in this one)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()

def timed(client_call):
    """(seconds, response) of one awaited request."""
    async def run():
        start = time.perf_counter()
        response = await client_call
        return time.perf_counter() - start, response
    return run()


def until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def world(tmp_path):
    built = build_world(tmp_path)
    yield built
    built.engine.gate and built.engine.gate.set()
    built.services.queue.close()


def test_80_waiting_txt2img_clients_leave_progress_and_interrupt_answering(world):
    """With more waiting A1111 clients than the server has threads, /progress and /interrupt still answer at once."""
    world.engine.gate = threading.Event()  # the first job holds the worker: every client waits
    app = world.client.app

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as client:
            body = {"prompt": "wait", "steps": 1, "width": 16, "height": 16}
            waiting = [asyncio.create_task(client.post("/sdapi/v1/txt2img", json=body)) for _ in range(80)]
            await asyncio.to_thread(until, lambda: len(world.services.queue.list(limit=0)) == 80)
            progress_s, progress = await timed(client.get("/sdapi/v1/progress"))
            interrupt_s, interrupt = await timed(client.post("/sdapi/v1/interrupt"))
            world.engine.gate.set()
            answers = await asyncio.gather(*waiting)
            return progress_s, progress, interrupt_s, interrupt, answers

    progress_s, progress, interrupt_s, interrupt, answers = run_coroutine(scenario())
    assert progress.status_code == 200 and progress.json()["state"]["job_count"] >= 1
    assert interrupt.status_code == 200
    assert progress_s < 1.0 and interrupt_s < 1.0, (progress_s, interrupt_s)
    assert [a.status_code for a in answers] == [200] * 80
    assert all(len(a.json()["images"]) == 1 for a in answers)


def test_checkpoint_switch_requested_during_a_job_happens_after_it_and_before_later_jobs(world):
    """POST /options sd_model_checkpoint waits its turn: after the running and earlier jobs, before later ones."""
    queue, engine, models = world.services.queue, world.engine, world.models
    title = world.services.catalog.checkpoints()[0].title
    switched_after = []
    select = models.select_checkpoint
    models.select_checkpoint = lambda name: (switched_after.append([r.prompt for _, r in engine.requests]),
                                             select(name))[1]
    engine.gate = threading.Event()
    queue.submit("txt2img", GenerationRequest(prompt="running", width=16, height=16), owner="alice")
    until(lambda: queue.current() is not None)
    queue.submit("txt2img", GenerationRequest(prompt="queued before", width=16, height=16), owner="bob")
    app = world.client.app

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=30) as client:
            switch = asyncio.create_task(client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny"}))
            await asyncio.to_thread(until, lambda: any(j.kind == "model" for j in queue.list(limit=0)))
            # Another client's job queued after the switch; owners take turns, yet it must not overtake the switch.
            later = queue.submit("txt2img", GenerationRequest(prompt="queued after", width=16, height=16),
                                 owner="carol")
            listed = [j.kind if j.kind == "model" else j.request.prompt for j in queue.list(limit=0)]
            engine.gate.set()
            response = await switch
            return listed, later, response

    listed, later, response = run_coroutine(scenario())
    assert listed == ["running", "queued before", "model", "queued after"]  # the switch is visible in the queue
    assert response.status_code == 200 and models.current_checkpoint.title == title
    assert switched_after == [["running", "queued before"]]
    assert queue.wait(later.id, 10).status.value == "succeeded"
    assert [r.prompt for _, r in engine.requests] == ["running", "queued before", "queued after"]
    assert world.client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == title


def test_unload_and_reload_are_queued_jobs(world):
    world.models.select_checkpoint("tiny")
    assert world.client.post("/sdapi/v1/unload-checkpoint").status_code == 200
    assert world.client.post("/sdapi/v1/reload-checkpoint").status_code == 200
    assert world.engine.model_actions == ["unload", "reload"]
    kinds = [j.kind for j in world.services.queue.list()]
    assert kinds.count("model") == 2


def test_read_endpoints_answer_while_a_long_job_holds_the_model(tmp_path, settings):
    """A job holds the model manager's lock (as every generation does); listings still answer within a second."""
    catalog = Catalog(settings)
    catalog.refresh()
    models = ModelManager(settings, catalog)
    title = models.select_checkpoint("tiny-sd1").title
    models.addons().prepare([], None)  # embeddings installed, as after a first job

    holding, release = threading.Event(), threading.Event()

    def long_job(kind, request, control):
        with models.lock:
            holding.set()
            release.wait(20)

    built = build_world(tmp_path / "api")
    built.services.queue.close()
    services = dataclasses.replace(built.services, catalog=catalog, models=models,
                                   queue=JobQueue(long_job, db_path=None).start())
    app = FastAPI()
    mount_api(app, services)
    services.queue.submit("txt2img", GenerationRequest(prompt="long", width=16, height=16))
    try:
        assert holding.wait(10)

        async def reads():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=30) as client:
                return [await timed(client.get(path)) for path in
                        ("/sdapi/v1/embeddings", "/sdapi/v1/sd-models", "/sdapi/v1/options")]

        answers = run_coroutine(reads())
    finally:
        release.set()
        services.queue.close()
        models.unload()
    for seconds, response in answers:
        assert response.status_code == 200 and seconds < 1.0, (response.request.url, seconds)
    embeddings, sd_models, options = (r.json() for _, r in answers)
    assert set(embeddings) == {"loaded", "skipped"}
    assert [m["model_name"] for m in sd_models] == ["tiny-sd1"]
    assert options["sd_model_checkpoint"] == title
