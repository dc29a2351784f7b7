"""A1111's task progress: force_task_id names a job, /internal/progress and /internal/pending-tasks follow it."""
import threading
import time

from test_api_support import world  # noqa: F401  (fixture)


def _progress(world, task, **extra):
    response = world.client.post("/internal/progress", json={"id_task": task, "id_live_preview": -1, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def _until(check, seconds=10):
    deadline = time.time() + seconds
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_task_is_queued_then_active_then_completed(world):
    assert _progress(world, "task(nothing)") == {
        "active": False, "queued": False, "completed": False, "progress": None, "eta": None, "live_preview": None,
        "id_live_preview": -1, "textinfo": "Waiting..."}
    world.engine.gate = threading.Event()
    body = {"prompt": "a", "width": 16, "height": 16}
    answers = []
    posts = [threading.Thread(target=lambda t=t: answers.append(world.client.post(
        "/sdapi/v1/txt2img", json={**body, "force_task_id": t}))) for t in ("task(one)", "task(two)")]
    posts[0].start()
    _until(lambda: _progress(world, "task(one)")["active"])
    posts[1].start()
    _until(lambda: _progress(world, "task(two)")["queued"])
    second = _progress(world, "task(two)")
    assert second["textinfo"] == "In queue: 1/1" and not second["active"]
    assert world.client.get("/internal/pending-tasks").json() == {"size": 1, "tasks": ["task(two)"]}
    first = _progress(world, "task(one)")
    assert first["active"] and not first["completed"] and 0.0 <= first["progress"] <= 1.0
    world.engine.gate.set()
    for post in posts:
        post.join(10)
    assert [a.status_code for a in answers] == [200, 200]
    assert world.engine.requests[0][1].task_id == "task(one)"
    done = _progress(world, "task(one)")
    assert done["completed"] and not done["active"] and done["progress"] == 1.0
    assert world.client.get("/internal/pending-tasks").json() == {"size": 0, "tasks": []}
