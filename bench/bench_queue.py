"""Queue overhead: 100 trivial jobs through the JobQueue against 100 direct calls of the same runner.

Prints milliseconds added per job, for a burst (all submitted, then waited for)
and one at a time (submit and wait, the latency one client sees), with the
SQLite file on disk. The goal is under 5 ms per job.

    python bench/bench_queue.py [--jobs 100]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webui.jobs import JobQueue  # noqa: E402
from webui.schemas import GenerationRequest, GenerationResult, JobStatus, NullControl, Progress  # noqa: E402

GOAL_MS = 5.0


def trivial_runner(kind, request, control):
    """One progress report and an empty result: the work itself costs (almost) nothing."""
    control.report(Progress(image_count=1, step=1, steps=1))
    return GenerationResult(seeds=[request.seed], prompts=[request.prompt])


def direct(requests) -> float:
    start = time.perf_counter()
    for request in requests:
        trivial_runner("txt2img", request, NullControl())
    return time.perf_counter() - start


def burst(queue: JobQueue, requests) -> float:
    start = time.perf_counter()
    ids = [queue.submit("txt2img", request).id for request in requests]
    for job_id in ids:
        assert queue.wait(job_id, 60).status == JobStatus.SUCCEEDED
    return time.perf_counter() - start


def one_by_one(queue: JobQueue, requests) -> float:
    start = time.perf_counter()
    for request in requests:
        assert queue.wait(queue.submit("txt2img", request).id, 60).status == JobStatus.SUCCEEDED
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    requests = [GenerationRequest(prompt=f"job {i}", seed=i, steps=1) for i in range(args.jobs)]
    with tempfile.TemporaryDirectory() as folder:
        results = {"burst": [], "one by one": []}
        for repeat in range(args.repeats):
            with JobQueue(trivial_runner, db_path=Path(folder) / f"bench{repeat}.sqlite3",
                          max_length=args.jobs + 1) as queue:
                base = direct(requests)
                results["burst"].append((burst(queue, requests) - base) / args.jobs * 1000)
                base = direct(requests)
                results["one by one"].append((one_by_one(queue, requests) - base) / args.jobs * 1000)
    worst = 0.0
    for name, values in results.items():
        median = statistics.median(values)
        worst = max(worst, median)
        print(f"{name:>10}: {median:.2f} ms of queue overhead per job (median of {args.repeats} runs of "
              f"{args.jobs} jobs; runs: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"goal < {GOAL_MS} ms per job: {'met' if worst < GOAL_MS else 'NOT met'}")
    return 0 if worst < GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
