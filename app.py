"""Start the web UI: parse flags -> Settings -> Catalog -> ModelManager -> Engine -> JobQueue -> server.

The one place where things are wired together (nothing happens at import time
anywhere else). Flags follow A1111's spelling where one exists.
"""
from __future__ import annotations

import argparse
import logging
import os
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
                        help="weights dtype: auto = fp16 on GPU; on the CPU bf16 where it is measured faster "
                             "(CPUs with AVX512-BF16 or AMX), else fp32")
    parser.add_argument("--no-half", dest="precision", action="store_const", const="fp32",
                        help="A1111's spelling of --precision fp32")
    parser.add_argument("--no-half-vae", action="store_true",
                        help="keep the VAE in fp32 (the SDXL VAE overflows in fp16; default on MPS)")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend used when Settings > Speed > torch_compile is on (default inductor)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--checkpoints-limit", type=int, default=1,
                        help="checkpoints kept in RAM for fast switching (A1111's sd_checkpoints_limit)")
    parser.add_argument("--max-queue", type=int, default=100, help="queued jobs accepted before answering 429")
    parser.add_argument("--live-preview-every", type=int, default=5,
                        help="steps between live previews of a running job (0 turns them off)")
    parser.add_argument("--no-ui", action="store_true", help="serve the API only")
    parser.add_argument("--allow-api-outdir", action="store_true",
                        help="let the API (options, override_settings) change the outdir_* saving folders; "
                             "they stay inside --outdir either way")
    security = parser.add_argument_group("security (see README: Security)")
    security.add_argument("--gradio-auth", default=None,
                          help='sign-in for the web UI: "user:password[,user2:password2]"')
    security.add_argument("--gradio-auth-path", type=Path, default=None,
                          help="file of user:password entries (one per line or comma-separated) for the web UI")
    security.add_argument("--api-auth", default=None,
                          help='HTTP Basic credentials for the API: "user:password[,user2:password2]"')
    security.add_argument("--admin-users", default="",
                          help="comma-separated users who may see and stop every user's jobs")
    security.add_argument("--insecure-no-auth", action="store_true",
                          help="allow --listen without any sign-in (everyone on the network may use the server)")
    security.add_argument("--allowed-hosts", default="",
                          help="comma-separated extra Host names the server answers to (e.g. a reverse proxy's "
                               "name); * answers to any")
    security.add_argument("--cors-allow-origins", default="",
                          help="comma-separated origins (https://site.example) whose pages may call the server")
    security.add_argument("--cors-allow-origins-regex", default=None,
                          help="regular expression of origins whose pages may call the server")
    security.add_argument("--tls-keyfile", type=Path, default=None, help="TLS private key: serve https")
    security.add_argument("--tls-certfile", type=Path, default=None, help="TLS certificate: serve https")
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


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def security_from_args(args: argparse.Namespace, settings: Settings, max_body_bytes: int):
    """The SecurityPolicy the flags ask for; ValueError (CredentialsError) names a bad flag."""
    from webui.security import SecurityPolicy
    from webui.security.credentials import parse_credentials, read_credentials_file

    ui_users = parse_credentials(args.gradio_auth or "", "--gradio-auth")
    if args.gradio_auth_path is not None:
        ui_users.update(read_credentials_file(args.gradio_auth_path))
    api_users = parse_credentials(args.api_auth or "", "--api-auth")
    return SecurityPolicy.create(
        secret_key_path=settings.secret_key_path, listen_host=settings.host, ui_users=ui_users, api_users=api_users,
        admins=_split(args.admin_users), allowed_hosts=_split(args.allowed_hosts),
        cors_origins=_split(args.cors_allow_origins), cors_origin_regex=args.cors_allow_origins_regex,
        max_body_bytes=max_body_bytes, secure_cookies=args.tls_certfile is not None)


def startup_refusal(args: argparse.Namespace) -> str | None:
    """Why the flags must not start a server, or None."""
    has_auth = bool(args.gradio_auth or args.gradio_auth_path or args.api_auth)
    if args.listen and not has_auth and not args.insecure_no_auth:
        return ("--listen makes the server reachable from the network, and no sign-in is configured: anyone who "
                "can reach this machine could generate, read every image and stop jobs. Add "
                '--gradio-auth "user:password" (and --api-auth for scripts), or --insecure-no-auth if this network '
                "is trusted.")
    if (args.tls_keyfile is None) != (args.tls_certfile is None):
        return "--tls-keyfile and --tls-certfile go together: give both (or neither)"
    return None


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        models_dir=args.models_dir.resolve(), outdir=args.outdir.resolve(),
        wildcards_dir=args.wildcards_dir.resolve(), styles_file=args.styles_file.resolve(),
        extra_ckpt_dirs=tuple(p.resolve() for p in args.ckpt_dir),
        extra_lora_dirs=tuple(p.resolve() for p in args.lora_dir),
        device=args.device, precision=args.precision, torch_threads=args.threads,
        no_half_vae=args.no_half_vae, compile_backend=args.compile_backend,
        host="0.0.0.0" if args.listen else "127.0.0.1", port=args.port,
        checkpoints_limit=args.checkpoints_limit, max_queue_length=args.max_queue,
        live_preview_every=max(0, args.live_preview_every),
        allow_api_outdir=args.allow_api_outdir,
        queue_url=args.queue_url, local_worker=not args.no_local_worker,
        max_queue_per_client=max(0, args.max_queue_per_client),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    refusal = startup_refusal(args)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    offline_environment()
    settings = settings_from_args(args)
    # torch.compile's kernels outlive the process here (read by inductor before anything imports torch)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(settings.torch_compile_cache))
    from webui.devices import UnsupportedDevice

    try:
        choice = settings.device_choice()
    except UnsupportedDevice as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("webui").info("computing on %s", choice.describe())

    from webui.api import max_body_bytes
    from webui.server import build_services, create_app

    if args.worker:
        return run_worker(build_services(settings))

    import uvicorn

    from webui.startup import StartupError, release_queue_db

    try:
        services = build_services(settings)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        security = security_from_args(args, settings, max_body_bytes(services))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.listen and not security.auth_required:
        logging.getLogger("webui").warning("--insecure-no-auth: anyone on the network can use this server")
    app = create_app(services, with_ui=not args.no_ui, security=security)
    services.queue.start()
    scheme = "https" if args.tls_certfile else "http"
    logging.getLogger("webui").info("serving on %s://%s:%d", scheme, settings.host, settings.port)
    tls = {"ssl_keyfile": str(args.tls_keyfile), "ssl_certfile": str(args.tls_certfile)} if args.tls_certfile else {}
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", **tls)
    finally:
        services.queue.stop()
        release_queue_db(settings.queue_db_path)
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
