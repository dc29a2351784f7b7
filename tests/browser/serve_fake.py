"""Serve the real UI over a fake engine: ``python tests/browser/serve_fake.py --port P --models-dir M --outdir O``.

The catalog, options, styles, wildcards, upscaler list, the job queue, the API
and the security middleware are the real ones; only the engine and the model
manager are fakes, so the browser flows that need long or failing jobs run in
seconds.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def build_services(args):
    from tests.browser.fake_stack import FakeEngine, FakeModels
    from webui.catalog import Catalog
    from webui.jobs import JobQueue
    from webui.config import Settings
    from webui.options import Options
    from webui.services import Services

    settings = Settings(models_dir=args.models_dir.resolve(), outdir=args.outdir.resolve(),
                        wildcards_dir=args.wildcards_dir.resolve(), styles_file=args.styles_file.resolve())
    settings.outdir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(settings)
    catalog.refresh()
    options = Options(settings.outdir / "config.json")
    models = FakeModels(catalog)
    engine = FakeEngine(settings, models)
    queue = JobQueue(engine.run, db_path=settings.queue_db_path, max_length=settings.max_queue_length, preview_every=2)
    extras = {}
    try:
        from webui.postprocess import UpscalerRegistry

        extras["upscalers"] = UpscalerRegistry(settings)
    except ImportError:
        pass
    try:
        from webui.prompts.styles import StyleDatabase
        from webui.prompts.wildcards import WildcardIndex

        extras["styles"] = StyleDatabase.load(settings.styles_file)
        extras["wildcards"] = WildcardIndex.scan(settings.wildcards_dir)
    except ImportError:
        pass
    return Services(settings=settings, catalog=catalog, models=models, engine=engine, queue=queue, options=options,
                    **extras)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--outdir", type=Path, required=True)
    parser.add_argument("--wildcards-dir", type=Path, default=ROOT / "wildcards")
    parser.add_argument("--styles-file", type=Path, default=ROOT / "styles.csv")
    parser.add_argument("--gradio-auth", default=None, help="user:password[,...] as app.py takes it")
    parser.add_argument("--cors-allow-origins", default="", help="comma-separated origins, as app.py takes them")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    import uvicorn

    from webui.api import max_body_bytes
    from webui.config import offline_environment
    from webui.security import SecurityPolicy
    from webui.security.credentials import parse_credentials
    from webui.server import create_app

    offline_environment()
    services = build_services(args)
    policy = SecurityPolicy.create(secret_key_path=services.settings.secret_key_path,
                                   ui_users=parse_credentials(args.gradio_auth or ""),
                                   cors_origins=[o for o in args.cors_allow_origins.split(",") if o],
                                   max_body_bytes=max_body_bytes(services))
    app = create_app(services, security=policy)
    services.queue.start()
    try:
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    finally:
        services.queue.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
