"""Start the web UI: parse flags -> Settings -> Catalog -> ModelManager -> Engine -> JobQueue -> server.

The one place where things are wired together (nothing happens at import time
anywhere else). Flags follow A1111's spelling where one exists.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from webui.config import DEVICE_CHOICES, PRECISION_CHOICES, PROJECT_ROOT, Settings, offline_environment


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Stable Diffusion web UI with an A1111-compatible API. Runs fully offline.")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument("--listen", action="store_true",
                        help="listen on all network interfaces (0.0.0.0) instead of 127.0.0.1 only")
    parser.add_argument("--models-dir", type=Path, default=PROJECT_ROOT / "models",
                        help="folder holding Stable-diffusion/, Lora/, VAE/, embeddings/, ESRGAN/ ... (default ./models)")
    parser.add_argument("--ckpt-dir", type=Path, action="append", default=[],
                        help="extra folder of checkpoints, besides models/Stable-diffusion (repeatable)")
    parser.add_argument("--lora-dir", type=Path, action="append", default=[],
                        help="extra folder of LoRAs, besides models/Lora (repeatable)")
    parser.add_argument("--outdir", type=Path, default=PROJECT_ROOT / "outputs",
                        help="folder for generated images, the job queue and caches (default ./outputs)")
    parser.add_argument("--wildcards-dir", type=Path, default=PROJECT_ROOT / "wildcards",
                        help="folder of __wildcard__ text files (default ./wildcards)")
    parser.add_argument("--styles-file", type=Path, default=PROJECT_ROOT / "styles.csv",
                        help="A1111 styles.csv (default ./styles.csv)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                        help="compute device: auto picks cuda, then mps, then cpu")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="weights dtype: auto = fp16 on GPU, fp32 on CPU; bf16 is faster on recent CPUs")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--checkpoints-limit", type=int, default=1,
                        help="checkpoints kept in RAM for fast switching (A1111's sd_checkpoints_limit)")
    parser.add_argument("--max-queue", type=int, default=100, help="queued jobs accepted before answering 429")
    parser.add_argument("--live-preview-every", type=int, default=5,
                        help="steps between live previews of a running job (0 turns them off)")
    parser.add_argument("--no-ui", action="store_true", help="serve the API only")
    parser.add_argument("--queue-url", default=None,
                        help="keep the job queue in Redis (redis://[:password@]host:port/db, or rediss://) so "
                             "workers on other machines share it; default: the embedded SQLite queue")
    parser.add_argument("--worker", action="store_true",
                        help="run a worker of the --queue-url queue: no HTTP server, one job at a time")
    parser.add_argument("--no-local-worker", action="store_true",
                        help="with --queue-url: the server only queues; separate --worker processes run the jobs")
    parser.add_argument("--max-queue-per-client", type=int, default=0,
                        help="queued jobs one client (X-Client-Id or user) may have before 429 (0 = no limit)")
    args = parser.parse_args(argv)
    if (args.worker or args.no_local_worker) and not args.queue_url:
        parser.error("--worker and --no-local-worker need --queue-url redis://host:port/db")
    if args.worker and args.no_local_worker:
        parser.error("--worker runs jobs; --no-local-worker is for the server")
    return args


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        models_dir=args.models_dir.resolve(), outdir=args.outdir.resolve(),
        wildcards_dir=args.wildcards_dir.resolve(), styles_file=args.styles_file.resolve(),
        extra_ckpt_dirs=tuple(p.resolve() for p in args.ckpt_dir),
        extra_lora_dirs=tuple(p.resolve() for p in args.lora_dir),
        device=args.device, precision=args.precision, torch_threads=args.threads,
        host="0.0.0.0" if args.listen else "127.0.0.1", port=args.port,
        checkpoints_limit=args.checkpoints_limit, max_queue_length=args.max_queue,
        live_preview_every=max(0, args.live_preview_every),
        queue_url=args.queue_url, local_worker=not args.no_local_worker,
        max_queue_per_client=max(0, args.max_queue_per_client),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    offline_environment()
    settings = settings_from_args(args)

    from webui.server import build_services, create_app

    if args.worker:
        return run_worker(build_services(settings))

    import uvicorn

    services = build_services(settings)
    app = create_app(services, with_ui=not args.no_ui)
    services.queue.start()
    logging.getLogger("webui").info("serving on http://%s:%d", settings.host, settings.port)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    finally:
        services.queue.stop()
    return 0


def run_worker(services) -> int:
    """Run jobs of the Redis queue in this process until SIGTERM or Ctrl+C (the running job goes back to the queue)."""
    import signal

    worker = services.queue.local_worker
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    worker.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
