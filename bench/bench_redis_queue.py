"""The Redis queue: overhead per job against the embedded SQLite queue, and throughput with 1 and 2 workers.

1. Overhead: trivial jobs (one progress report, an empty result) through the
   SQLite queue, the Redis queue with the server's local worker, and the Redis
   queue with a worker in another process; milliseconds added per job against
   direct calls, one job at a time (the latency one client sees) and in a burst.
2. Throughput: txt2img jobs of the demo model (64x64, 20 steps, one torch
   thread) run by ``app.py --worker`` processes, one and then two.

    python bench/bench_redis_queue.py [--jobs 100] [--images 12] [--queue-url redis://...]

Without --queue-url it starts its own redis-server (Debian's package) on a free port.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_queue import burst, direct, one_by_one, trivial_runner  # noqa: E402
from tests.redis_support import RedisServer, WorkerProcess  # noqa: E402
from webui.jobs import JobQueue  # noqa: E402
from webui.jobs.redis_queue import RedisJobQueue  # noqa: E402
from webui.schemas import GenerationRequest, JobStatus  # noqa: E402

GOAL_MS = 5.0


def overhead(make_queue, requests, repeats: int) -> dict[str, float]:
    """Median milliseconds of queue overhead per job, one by one and in a burst."""
    runs = {"one by one": [], "burst": [], "cpu": []}
    for repeat in range(repeats):
        queue = make_queue(repeat)
        try:
            base = direct(requests)
            cpu = time.process_time()
            runs["one by one"].append((one_by_one(queue, requests) - base) / len(requests) * 1000)
            runs["cpu"].append((time.process_time() - cpu - base) / len(requests) * 1000)
            base = direct(requests)
            runs["burst"].append((burst(queue, requests) - base) / len(requests) * 1000)
        finally:
            queue.close()
    return {name: statistics.median(values) for name, values in runs.items()}


def flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


def throughput(url: str, workers: int, images: int, outdir: Path) -> float:
    """Images per second of ``workers`` ``app.py --worker`` processes running demo-model jobs."""
    flush(url)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen([sys.executable, "app.py", "--worker", "--queue-url", url, "--threads", "1",
                               "--outdir", str(outdir / f"worker{i}")], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(workers)]
    queue = RedisJobQueue(url, None, max_length=images + workers + 1, outdir=outdir / "server").start()
    try:
        def request(i: int) -> GenerationRequest:
            return GenerationRequest(prompt="a red circle on a blue background", seed=i, steps=20, width=64,
                                     height=64, sampler_name="Euler", save_images=True)

        # Warm up: every worker loads the model once, outside the timing.
        deadline = time.monotonic() + 300
        while len(queue.broker.workers()) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        warm = [queue.submit("txt2img", request(-1 - i), owner=f"warm{i}") for i in range(workers * 2)]
        for job in warm:
            assert queue.wait(job.id, 300).status == JobStatus.SUCCEEDED
        start = time.perf_counter()
        jobs = [queue.submit("txt2img", request(i), owner=f"client{i % 3}") for i in range(images)]
        done = [queue.wait(job.id, 600) for job in jobs]
        elapsed = time.perf_counter() - start
        assert all(job.status == JobStatus.SUCCEEDED for job in done), [job.error for job in done]
        used = {job.worker for job in done}
        print(f"  {workers} worker(s): {images} images in {elapsed:.2f} s = {images / elapsed:.2f} images/s "
              f"(ran on {len(used)} worker(s))")
        return images / elapsed
    finally:
        queue.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=12, help="demo-model images per throughput run (0: skip)")
    parser.add_argument("--queue-url", default=None)
    args = parser.parse_args()
    requests = [GenerationRequest(prompt=f"job {i}", seed=i, steps=1) for i in range(args.jobs)]
    with tempfile.TemporaryDirectory() as folder:
        server = None
        url = args.queue_url
        if url is None:
            server = RedisServer(Path(folder) / "redis").start()
            url = server.url
        try:
            print(f"queue overhead per job ({args.jobs} trivial jobs, median of {args.repeats} runs):")
            results = {
                "SQLite, worker thread": overhead(
                    lambda r: JobQueue(trivial_runner, db_path=Path(folder) / f"q{r}.sqlite3",
                                       max_length=args.jobs + 1).start(), requests, args.repeats),
                "Redis, local worker": overhead(
                    lambda r: (flush(url), RedisJobQueue(url, trivial_runner, max_length=args.jobs + 1).start())[1],
                    requests, args.repeats),
            }
            flush(url)
            remote = WorkerProcess(url, "bench-remote", step_seconds=0)
            try:
                results["Redis, worker process"] = overhead(
                    lambda r: RedisJobQueue(url, None, max_length=args.jobs + 1).start(), requests, args.repeats)
            finally:
                remote.stop()
            for name, values in results.items():
                print(f"  {name:>22}: {values['one by one']:.2f} ms one by one, {values['burst']:.2f} ms in a burst; "
                      f"{values['cpu']:.2f} ms CPU of this process per job")
            worst = max(max(v["one by one"], v["burst"]) for v in results.values())
            print(f"  goal < {GOAL_MS} ms per job: {'met' if worst < GOAL_MS else 'NOT met'}")
            if args.images > 0:
                print("throughput, demo model 64x64, 20 steps, Euler, one torch thread per worker:")
                for count in (1, 2):
                    throughput(url, count, args.images, Path(folder) / f"out{count}")
        finally:
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
