"""Fair sharing on the embedded SQLite queue: owners take turns, per-client limits answer 429."""
from __future__ import annotations

import os
import socket

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.fake_engine import FakeEngine
from webui.api.queue_routes import queue_router
from webui.jobs import JobQueue
from webui.jobs.fairness import fair_order
from webui.schemas import GenerationRequest, JobStatus


def assert_round_robin(prompts: list[str], clients: list[str]) -> None:
    """Prompts "<client> <n>" ran in turns (every client once per round), each client's in its own order."""
    owners = [prompt.split()[0] for prompt in prompts]
    for start in range(0, len(owners), len(clients)):
        assert sorted(owners[start:start + len(clients)]) == sorted(clients), owners
    for client in clients:
        mine = [int(p.split()[1]) for p in prompts if p.split()[0] == client]
        assert mine == sorted(mine), f"{client}'s jobs ran out of order: {mine}"


def req(prompt: str) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, steps=1, width=64, height=64)


def test_fair_order_interleaves_owners_and_keeps_each_owners_order():
    items = [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("c", 1), ("c", 2)]
    order = fair_order(items, lambda item: item[0], {})
    assert order == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("c", 2), ("a", 3)]
    # An owner served a moment ago waits behind one that was not.
    assert fair_order(items, lambda item: item[0], {"a": 5, "b": 3})[:3] == [("c", 1), ("b", 1), ("a", 1)]


def test_30_jobs_from_3_clients_run_round_robin_on_sqlite(tmp_path):
    engine = FakeEngine(step_seconds=0)
    queue = JobQueue(engine.run, db_path=tmp_path / "queue.sqlite3")
    try:
        ids = [queue.submit("txt2img", req(f"{client} {i}"), owner=client).id
               for client in ("alice", "bob", "carol") for i in range(10)]
        assert queue.get(ids[20]).position == 3, "carol's first job should run third"
        assert [j.request.prompt for j in queue.list()][:4] == ["alice 0", "bob 0", "carol 0", "alice 1"]
        queue.start()
        finished = [queue.wait(job_id, 30) for job_id in ids]
        assert all(job.status == JobStatus.SUCCEEDED for job in finished)
    finally:
        queue.close()
    assert_round_robin(engine.calls, ["alice", "bob", "carol"])
    assert finished[0].worker == f"{socket.gethostname()}:{os.getpid()}"
    assert queue.workers() == {}, "a closed queue has no worker"


def test_per_client_limit_answers_429_to_that_client_only():
    queue = JobQueue(FakeEngine().run, db_path=None, max_per_owner=2)  # not started: jobs stay queued
    app = FastAPI()
    app.include_router(queue_router(queue, build_request=lambda kind, payload: req(**payload)))
    client = TestClient(app)
    body = {"kind": "txt2img", "request": {"prompt": "x"}}
    try:
        for _ in range(2):
            assert client.post("/api/v1/jobs", json=body, headers={"X-Client-Id": "script"}).status_code == 202
        refused = client.post("/api/v1/jobs", json=body, headers={"X-Client-Id": "script"})
        assert refused.status_code == 429 and "2 jobs waiting" in refused.json()["detail"]
        assert refused.headers["Retry-After"]
        assert client.post("/api/v1/jobs", json=body, headers={"X-Client-Id": "person"}).status_code == 202
    finally:
        queue.close()


def test_both_queues_provide_the_queue_interface(tmp_path):
    from webui.jobs.interface import QueueBackend
    from webui.jobs.redis_queue import RedisJobQueue

    embedded = JobQueue(FakeEngine().run, db_path=None)
    try:
        assert isinstance(embedded, QueueBackend)
    finally:
        embedded.close()
    shared = RedisJobQueue("redis://127.0.0.1:1/0")  # never started: no connection is made
    assert isinstance(shared, QueueBackend)
    shared.broker.client.close()
