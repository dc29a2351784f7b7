"""The Redis queue against a real redis-server: workers in other processes share jobs, survive deaths,
take turns between clients, obey interrupt within a step, prefer the worker that has the checkpoint,
and report a lost Redis. The fake engine sits behind the workers (an edge), never a fake Redis.
"""
from __future__ import annotations

import dataclasses
import json
import signal
import time

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from tests.fake_engine import FakeEngine
from tests.test_jobs_fairness import assert_round_robin
from tests.redis_support import RedisServer, WorkerProcess, wait_until
from webui.api.queue_routes import queue_router
from webui.images import read_infotext
from webui.jobs.redis_broker import RedisBroker
from webui.jobs.redis_queue import RedisJobQueue
from webui.jobs.redis_worker import RedisWorker
from webui.schemas import GenerationRequest, JobStatus, QueueFull


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def workers(redis_url):
    """Start worker processes: ``workers(name, step_seconds=..., lease_s=...)``; all stopped afterwards."""
    started: list[WorkerProcess] = []

    def start(name: str, **kwargs) -> WorkerProcess:
        url = kwargs.pop("url", redis_url)
        started.append(WorkerProcess(url, name, **kwargs))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def queues():
    """RedisJobQueue instances closed after the test."""
    made: list[RedisJobQueue] = []

    def make(url: str, runner=None, **kwargs) -> RedisJobQueue:
        made.append(RedisJobQueue(url, runner, **kwargs).start())
        return made[-1]

    yield make
    for queue in made:
        queue.close()


def req(prompt: str, **fields) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, width=64, height=64, **{"steps": 3, **fields})


def test_server_without_local_worker_and_two_worker_processes_share_jobs(settings, redis_url, workers):
    from webui.server import build_services, create_app

    settings = dataclasses.replace(settings, queue_url=redis_url, local_worker=False)
    services = build_services(settings, engine=FakeEngine())
    assert services.queue.local_worker is None
    workers("w-a", step_seconds=0.03)
    workers("w-b", step_seconds=0.03)
    services.queue.start()
    try:
        client = TestClient(create_app(services, with_ui=False), base_url="http://127.0.0.1")
        ids = []
        for i in range(8):
            answer = client.post("/api/v1/jobs", headers={"X-Client-Id": f"c{i % 2}"}, json={
                "kind": "txt2img", "request": {"prompt": f"job {i}", "steps": 4, "width": 64, "height": 64,
                                               "seed": 100 + i, "save_images": True}})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        blocking = client.post("/sdapi/v1/txt2img", json={"prompt": "a1111 client", "steps": 2, "width": 64,
                                                          "height": 64})
        assert blocking.status_code == 200, blocking.text
        assert len(blocking.json()["images"]) == 1

        ran_on = set()
        for job_id in ids:
            services.queue.wait(job_id, 30)
            data = client.get(f"/api/v1/jobs/{job_id}").json()
            assert data["status"] == "succeeded", data
            assert data["worker"] in ("w-a", "w-b")
            ran_on.add(data["worker"])
            assert len(data["result"]["images"]) == 1
            # The server saved the image the remote worker sent back, infotext and all.
            [path] = data["result"]["saved_paths"]
            assert str(settings.outdir) in path
            with Image.open(path) as image:
                assert read_infotext(image).startswith(data["request"]["prompt"])
        assert ran_on == {"w-a", "w-b"}, "both workers should have taken jobs"
    finally:
        services.queue.close()


def test_worker_killed_mid_job_its_job_completes_on_another_worker(redis_url, workers, queues):
    queue = queues(redis_url)
    victim = workers("w-a", step_seconds=0.1, lease_s=1.0)
    job = queue.submit("txt2img", req("long", steps=100), owner="x")
    running = wait_until(lambda: (j := queue.get(job.id)).progress is not None and j.progress.step >= 2 and j)
    assert running.status == JobStatus.RUNNING and running.worker == "w-a"
    survivor = workers("w-b", step_seconds=0.005, lease_s=1.0)
    victim.sigkill()
    done = queue.wait(job.id, 30)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.worker == survivor.name
    assert len(done.result.images) == 1
    assert queue.running_state().job is None
    assert all(j.status.finished for j in queue.list())
    assert queue.broker.client.hget(queue.broker.key("job", job.id), "lost") == b"w-a"


def test_a_job_that_kills_a_second_worker_fails_with_that_reason(redis_url, workers, queues):
    queue = queues(redis_url)
    workers("w-a", lease_s=0.5)
    workers("w-b", lease_s=0.5)
    job = queue.submit("txt2img", req("crash"), owner="x")
    done = queue.wait(job.id, 30)
    assert done.status == JobStatus.FAILED
    assert done.error_type == "WorkerLost"
    assert "2 times" in done.error and "w-a" in done.error and "w-b" in done.error
    # The queue goes on: a new worker runs the next job.
    workers("w-c")
    assert queue.wait(queue.submit("txt2img", req("after"), owner="x").id, 30).status == JobStatus.SUCCEEDED


def test_30_jobs_from_3_clients_run_round_robin(redis_url, queues):
    queue = queues(redis_url)
    for client in ("alice", "bob", "carol"):  # alice's ten first, then bob's, then carol's
        for i in range(10):
            queue.submit("txt2img", req(f"{client} {i}", steps=1), owner=client)
    assert queue.get(queue.list()[-1].id).position == 30
    first_of_carol = next(j for j in queue.list() if j.request.prompt == "carol 0")
    assert first_of_carol.position == 3
    engine = FakeEngine(step_seconds=0)
    worker = RedisWorker(queue.broker, engine.run, name="rr", idle_wait_s=0.05).start()
    try:
        wait_until(lambda: len(engine.calls) == 30, timeout=30)
    finally:
        worker.stop()
    assert len(engine.calls) == 30
    assert_round_robin(engine.calls, ["alice", "bob", "carol"])


def test_per_client_limit(redis_url, queues):
    queue = queues(redis_url, max_per_owner=2)
    queue.submit("txt2img", req("1"), owner="script")
    queue.submit("txt2img", req("2"), owner="script")
    with pytest.raises(QueueFull) as error:
        queue.submit("txt2img", req("3"), owner="script")
    assert "2 jobs waiting" in str(error.value)
    assert queue.submit("txt2img", req("other"), owner="person").status == JobStatus.QUEUED


def test_interrupt_and_skip_reach_a_remote_worker_within_a_step(redis_url, workers, queues):
    step = 0.4
    queue = queues(redis_url)
    workers("remote", step_seconds=step)
    job = queue.submit("txt2img", req("stop me", steps=50), owner="x")
    wait_until(lambda: (j := queue.get(job.id)).progress is not None and j.progress.step >= 2)
    step_then = queue.get(job.id).progress.step
    asked = time.time()
    queue.interrupt(job.id)
    done = queue.wait(job.id, 10)
    assert done.status == JobStatus.INTERRUPTED
    assert done.progress.step <= step_then + 1, "the worker ran on for more than a step"
    assert done.finished - asked < step + 0.5

    batch = queue.submit("txt2img", req("skip one", steps=4, n_iter=2), owner="x")
    wait_until(lambda: (j := queue.get(batch.id)).progress is not None and j.progress.step >= 1)
    assert queue.skip(batch.id).status == JobStatus.RUNNING
    done = queue.wait(batch.id, 20)
    assert done.status == JobStatus.SUCCEEDED
    assert len(done.result.images) == 1, "the skipped image should be missing from the batch"


def test_jobs_go_to_the_worker_that_has_their_checkpoint(redis_url, queues):
    queue = queues(redis_url, checkpoint_of=lambda kind, request: request.checkpoint or "")
    engines = {"has-a": FakeEngine(step_seconds=0.01), "has-b": FakeEngine(step_seconds=0.01)}
    holdings = {"has-a": {"loaded": ["aaa"], "files": ["aaa", "bbb"]},
                "has-b": {"loaded": ["bbb"], "files": ["aaa", "bbb", "ccc"]}}
    started = [RedisWorker(queue.broker, engines[name].run, name=name, holdings=lambda n=name: holdings[n],
                           grace_s=2.0, heartbeat_s=0.1, idle_wait_s=0.05).start() for name in engines]
    try:
        wait_until(lambda: len(queue.broker.workers()) == 2)
        time.sleep(0.3)  # each worker re-reads its peers' heartbeats at most every 0.1 s here
        for checkpoint, expected in [("bbb", "has-b"), ("aaa", "has-a"), ("ccc", "has-b")] * 2:
            job = queue.submit("txt2img", req(checkpoint, checkpoint=checkpoint), owner="x")
            assert queue.wait(job.id, 20).worker == expected, checkpoint
        # When the worker that has it loaded is busy, the other one takes the job after the grace period.
        busy = queue.submit("txt2img", req("busy", checkpoint="bbb", steps=150, n_iter=10), owner="x")
        wait_until(lambda: queue.get(busy.id).status == JobStatus.RUNNING)
        waiting = queue.submit("txt2img", req("bbb meanwhile", checkpoint="bbb"), owner="y")
        assert queue.wait(waiting.id, 20).worker == "has-a"
        queue.cancel(busy.id)
    finally:
        for worker in started:
            worker.stop()


def test_a_lost_redis_is_reported_and_what_it_acknowledged_survives(tmp_path, workers):
    server = RedisServer(tmp_path / "redis", persistent=True).start()
    queue = RedisJobQueue(server.url, retry_cap_s=1.0).start()
    try:
        app = FastAPI()
        app.include_router(queue_router(queue, build_request=lambda kind, payload: req(**payload)))
        client = TestClient(app)
        kept = queue.submit("txt2img", req("acknowledged"), owner="x")
        worker = workers("w", url=server.url)
        wait_until(lambda: queue.get(kept.id).status.finished)
        worker.stop()
        waiting = queue.submit("txt2img", req("queued before the crash", steps=1), owner="x")
        server.kill()  # SIGKILL: only what reached the append-only file survives
        worker = workers("w2", url=server.url)  # starts while Redis is away: it waits and retries

        progress = wait_until(lambda: (p := client.get("/sdapi/v1/progress").json())["state"].get("queue") and p)
        assert "Redis" in progress["state"]["queue"] and "unreachable" in progress["textinfo"]
        answer = client.post("/api/v1/jobs", json={"kind": "txt2img", "request": {"prompt": "during"}})
        assert answer.status_code == 503 and "Redis" in answer.json()["detail"]

        server.start()  # same port, same folder
        assert queue.wait(waiting.id, 30).status == JobStatus.SUCCEEDED
        assert queue.get(waiting.id).worker == "w2"
        assert queue.get(kept.id).status == JobStatus.SUCCEEDED
        wait_until(lambda: "queue" not in client.get("/sdapi/v1/progress").json()["state"])
        log = worker.stop()
        assert "unreachable" in log and "reachable again" in log
    finally:
        queue.close()
        server.stop()


def test_progress_and_previews_stream_from_a_remote_worker(redis_url, workers, queues):
    queue = queues(redis_url)
    app = FastAPI()
    app.include_router(queue_router(queue, build_request=lambda kind, payload: req(**payload)))
    client = TestClient(app)
    workers("remote", step_seconds=0.05)
    job_id = client.post("/api/v1/jobs", json={"kind": "txt2img", "request": {"prompt": "watch", "steps": 10}}).json()["id"]
    events, previews = [], 0
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                events.append(line[len("event: "):])
            elif line.startswith("data: ") and events[-1] == "progress":
                previews += json.loads(line[len("data: "):])["progress"]["preview"] is not None
            if events and events[-1] == "finished":
                break
    assert "progress" in events and events[-1] == "finished"
    assert previews >= 1, "the worker's previews (every 5 steps) should reach the stream"
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["worker"] == "remote" and job["progress"]["step"] == 10
    listed = client.get("/api/v1/workers").json()["workers"]
    assert listed["remote"]["device"] == "fake" and "files" in listed["remote"]


def test_worker_flags_need_a_queue_url():
    import app

    with pytest.raises(SystemExit):
        app.parse_args(["--worker"])
    with pytest.raises(SystemExit):
        app.parse_args(["--no-local-worker"])
    with pytest.raises(SystemExit):
        app.parse_args(["--worker", "--no-local-worker", "--queue-url", "redis://localhost:6379/0"])
    settings = app.settings_from_args(app.parse_args(["--queue-url", "redis://:pw@host:6379/2", "--no-local-worker",
                                                      "--max-queue-per-client", "4"]))
    assert settings.queue_url == "redis://:pw@host:6379/2" and not settings.local_worker
    assert settings.max_queue_per_client == 4


def test_jobs_name_checkpoints_by_hash_and_workers_advertise_their_files(settings):
    from webui.catalog import Catalog
    from webui.jobs.holdings import checkpoint_needed, worker_holdings
    from webui.models.manager import ModelManager

    catalog = Catalog(settings)
    catalog.refresh()
    [info] = catalog.checkpoints()
    needed = checkpoint_needed(catalog)
    assert needed("txt2img", req("x", checkpoint=info.name)) == info.short_hash
    assert needed("txt2img", req("x", checkpoint="elsewhere.safetensors [0123ABCDEF]")) == "0123abcdef"
    assert needed("txt2img", req("x")) == ""
    holdings = worker_holdings("cpu", catalog, ModelManager(settings, catalog))()
    assert holdings == {"device": "cpu", "loaded": [], "files": [info.short_hash]}


def test_a_worker_stopped_with_sigterm_gives_its_job_back_at_once(redis_url, workers, queues):
    queue = queues(redis_url)
    leaving = workers("leaving", step_seconds=0.1, lease_s=30.0)  # a lease far longer than the test
    job = queue.submit("txt2img", req("handed over", steps=30), owner="x")
    wait_until(lambda: queue.get(job.id).status == JobStatus.RUNNING)
    log = leaving.stop()
    assert "given back to the queue" in log
    assert queue.get(job.id).status == JobStatus.QUEUED
    workers("staying", step_seconds=0.001)
    done = queue.wait(job.id, 20)
    assert done.status == JobStatus.SUCCEEDED and done.worker == "staying"
    assert queue.broker.client.hget(queue.broker.key("job", job.id), "deliveries") == b"1"


def test_history_is_pruned_to_its_limits(redis_url, queues):
    engine = FakeEngine(step_seconds=0)
    queue = queues(redis_url, engine.run, keep_history=3, keep_results=1)
    ids = [queue.submit("txt2img", req(f"job {i}", steps=1), owner="x").id for i in range(5)]
    for job_id in ids:
        assert queue.wait(job_id, 20).status == JobStatus.SUCCEEDED
    wait_until(lambda: len(queue.broker.history_ids(10)) == 3, timeout=5)
    assert [j.id for j in queue.list()] == ids[2:]
    assert len(queue.get(ids[4]).result.images) == 1
    assert queue.get(ids[3]).result is None, "only the newest result keeps its images"


def test_a_job_interrupted_while_its_worker_died_is_not_run_again(redis_url, workers, queues):
    queue = queues(redis_url)
    frozen = workers("frozen", step_seconds=0.1, lease_s=2.0)
    job = queue.submit("txt2img", req("stop and die", steps=100), owner="x")
    wait_until(lambda: queue.get(job.id).status == JobStatus.RUNNING)
    frozen.process.send_signal(signal.SIGSTOP)  # it can neither renew its lease nor see the interrupt
    queue.interrupt(job.id)
    workers("other", step_seconds=0.001)
    done = queue.wait(job.id, 20)
    frozen.sigkill()
    assert done.status == JobStatus.INTERRUPTED, done.error
    assert "stopped answering" in done.error and done.worker == "frozen"
    assert queue.broker.client.hget(queue.broker.key("job", job.id), "deliveries") == b"1", "it ran again"
