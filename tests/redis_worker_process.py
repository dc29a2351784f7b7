"""A worker process for the Redis queue tests: the real RedisWorker, the fake engine behind it.

argv: URL NAME STEP_SECONDS LEASE_S LOADED FILES PREFIX (LOADED/FILES: comma-separated checkpoint hashes).
A job whose prompt is "crash" kills this process with SIGKILL, as a driver crash or power loss would.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

from tests.fake_engine import FakeEngine
from webui.jobs.redis_broker import RedisBroker
from webui.jobs.redis_worker import RedisWorker
from webui.schemas import GenerationRequest


def main() -> None:
    url, name, step_seconds, lease_s, loaded, files, prefix = sys.argv[1:8]
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")
    engine = FakeEngine(step_seconds=float(step_seconds))

    def runner(kind, request, control):
        if isinstance(request, GenerationRequest) and request.prompt == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        return engine.run(kind, request, control)

    holdings = {"device": "fake", "loaded": [h for h in loaded.split(",") if h],
                "files": [h for h in files.split(",") if h]}
    worker = RedisWorker(RedisBroker.from_url(url, prefix), runner, name=name, holdings=lambda: holdings,
                         lease_s=float(lease_s), heartbeat_s=0.2, idle_wait_s=0.2, url=url, retry_cap_s=1.0)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    print("ready", flush=True)
    worker.run_forever()


if __name__ == "__main__":
    main()
