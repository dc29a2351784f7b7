"""The queue survives its process being killed mid-job: queued jobs still run, the running one fails with a reason."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.fake_engine import FakeEngine
from webui.jobs import JobQueue
from webui.schemas import JobStatus

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from tests.fake_engine import FakeEngine
    from webui.jobs import JobQueue
    from webui.schemas import GenerationRequest

    queue = JobQueue(FakeEngine(step_seconds=0.05).run, db_path=sys.argv[1])
    ids = [queue.submit("txt2img", GenerationRequest(prompt=p, steps=s, width=64, height=64)).id
           for p, s in (("first", 150), ("second", 2), ("third", 2))]
    queue.start()
    deadline = time.monotonic() + 30
    while (queue.current() is None or queue.current().progress.step < 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    print(json.dumps({"ids": ids, "running": queue.current().id}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_restart_after_a_kill_runs_the_queued_jobs_and_fails_the_running_one(tmp_path):
    db = tmp_path / "queue.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run([sys.executable, "-c", CHILD, str(db)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    told = json.loads(child.stdout.strip().splitlines()[-1])
    first, second, third = told["ids"]
    assert told["running"] == first

    engine = FakeEngine(step_seconds=0.001)
    with JobQueue(engine.run, db_path=db) as queue:
        lost = queue.get(first)
        assert lost.status == JobStatus.FAILED and lost.error == "server restarted"
        assert queue.wait(second, 20).status == JobStatus.SUCCEEDED
        assert queue.wait(third, 20).status == JobStatus.SUCCEEDED
    assert engine.calls == ["second", "third"]
