"""The queue's HTTP routes over the fake engine: 429 when full, 404/422/403 JSON, job API, SSE, A1111 progress."""
from __future__ import annotations

import json
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.fake_engine import FakeEngine
from webui.api.queue_routes import queue_router
from webui.jobs import JobQueue
from webui.schemas import GenerationRequest, InvalidRequest, image_from_base64


def build_request(kind: str, payload: dict) -> GenerationRequest:
    """A small stand-in for the app's A1111 body parser: known fields only, whole-number steps."""
    known = {"prompt", "steps", "batch_size", "n_iter", "width", "height", "seed"}
    for name in payload:
        if name not in known:
            raise InvalidRequest(f"unknown field {name!r}", field=name)
    if not isinstance(payload.get("steps", 1), int) or payload.get("steps", 1) < 1:
        raise InvalidRequest("steps must be a whole number of at least 1", field="steps")
    return GenerationRequest(**payload)


def make_client(queue: JobQueue) -> TestClient:
    app = FastAPI()
    app.include_router(queue_router(queue, build_request=build_request))
    return TestClient(app)


@pytest.fixture
def engine():
    return FakeEngine(step_seconds=0.01)


@pytest.fixture
def queue(engine):
    q = JobQueue(engine.run, db_path=None, preview_every=2)
    yield q
    q.close()


def job_body(prompt="a cat", **fields):
    return {"kind": "txt2img", "request": {"prompt": prompt, "steps": 3, "width": 64, "height": 64, **fields}}


def test_full_queue_answers_429_with_retry_after(engine):
    queue = JobQueue(engine.run, db_path=None, max_length=2)  # no worker: jobs stay queued
    client = make_client(queue)
    assert client.post("/api/v1/jobs", json=job_body()).status_code == 202
    assert client.post("/api/v1/jobs", json=job_body()).status_code == 202
    response = client.post("/api/v1/jobs", json=job_body())
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["error"] == "queue full" and "2 jobs" in body["detail"]
    queue.close()


def test_submit_returns_at_once_and_the_job_gives_its_images(queue):
    client = make_client(queue)
    response = client.post("/api/v1/jobs", json=job_body(batch_size=2))
    assert response.status_code == 202
    created = response.json()
    assert created["status"] == "queued" and created["position"] == 1 and len(created["id"]) == 32
    queue.start()
    queue.wait(created["id"], 10)
    job = client.get(f"/api/v1/jobs/{created['id']}").json()
    assert job["status"] == "succeeded" and job["progress"]["fraction"] == 1.0
    images = [image_from_base64(text) for text in job["result"]["images"]]
    assert len(images) == 2 and images[0].size == (8, 8)
    listed = client.get("/api/v1/jobs").json()["jobs"]
    assert [j["id"] for j in listed] == [created["id"]] and listed[0]["result"]["images"] == []


def test_unknown_job_is_404_and_bad_input_is_422_naming_the_field(queue):
    client = make_client(queue)
    for response in (client.get("/api/v1/jobs/nope"), client.delete("/api/v1/jobs/nope"),
                     client.post("/api/v1/jobs/nope/interrupt"), client.get("/api/v1/jobs/nope/events")):
        assert response.status_code == 404 and response.json()["error"] == "NotFound"
    bad_steps = client.post("/api/v1/jobs", json=job_body(steps="many"))
    assert bad_steps.status_code == 422 and bad_steps.json()["field"] == "steps"
    bad_kind = client.post("/api/v1/jobs", json={"kind": "paint", "request": {}})
    assert bad_kind.status_code == 422 and bad_kind.json()["field"] == "kind"
    assert client.post("/api/v1/jobs", json=[1, 2]).json()["field"] == "body"


def test_cancel_by_id_and_only_for_the_client_that_owns_it(queue):
    client = make_client(queue)
    job_id = client.post("/api/v1/jobs", json=job_body(), headers={"X-Client-Id": "alice"}).json()["id"]
    other = client.delete(f"/api/v1/jobs/{job_id}", headers={"X-Client-Id": "bob"})
    assert other.status_code == 403
    mine = client.delete(f"/api/v1/jobs/{job_id}", headers={"X-Client-Id": "alice"})
    assert mine.status_code == 200 and mine.json()["status"] == "canceled"
    queue.start()
    assert queue.wait(job_id, 1).status.value == "canceled"


def test_events_stream_progress_then_the_final_event(queue):
    client = make_client(queue)
    job_id = client.post("/api/v1/jobs", json=job_body(steps=4)).json()["id"]
    queue.start()
    events = []
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
    names = [n for n, _ in events]
    assert names[-1] == "finished" and names.count("finished") == 1
    steps = [d["progress"]["step"] for n, d in events if n == "progress"]
    assert steps and steps == sorted(steps) and steps[-1] == 4
    assert any(d["progress"]["preview"] for n, d in events if n == "progress")
    final = events[-1][1]
    assert final["status"] == "succeeded" and len(final["result"]["images"]) == 1


def test_a1111_progress_and_interrupt_act_on_the_running_job(queue, engine):
    client = make_client(queue)
    idle = client.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None
    engine.step_seconds = 0.02
    job_id = client.post("/api/v1/jobs", json=job_body(steps=50, batch_size=2)).json()["id"]
    queue.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        busy = client.get("/sdapi/v1/progress").json()
        if busy["state"]["sampling_step"] >= 2:
            break
        time.sleep(0.01)
    assert busy["state"]["sampling_steps"] == 50 and busy["state"]["job_count"] == 2
    assert 0 < busy["progress"] < 1 and busy["state"]["job"] == "txt2img"
    assert busy["current_image"] is not None  # a preview every 2 steps
    assert set(busy["state"]) == {"skipped", "interrupted", "job", "job_count", "job_timestamp", "job_no",
                                  "sampling_step", "sampling_steps"}
    assert client.post("/sdapi/v1/skip").status_code == 200
    assert client.post("/sdapi/v1/interrupt").status_code == 200
    done = queue.wait(job_id, 10)
    assert done.status.value == "interrupted"
