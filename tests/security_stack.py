"""The real app (API, gradio UI, queue, security middleware) over the browser tests' fake engine, for HTTP attack tests."""
from __future__ import annotations

from pathlib import Path

from tests.browser.fake_stack import FakeEngine, FakeModels, write_fake_checkpoints
from webui.catalog import Catalog
from webui.config import Settings
from webui.jobs import JobQueue
from webui.options import Options
from webui.services import Services


def fake_services(root: Path, **settings_changes) -> Services:
    """Services with a real catalog, options and SQLite queue under ``root``; only engine and models are fakes."""
    settings = Settings(models_dir=root / "models", outdir=root / "outputs", wildcards_dir=root / "wildcards",
                        styles_file=root / "styles.csv", **settings_changes)
    write_fake_checkpoints(settings.model_folder("Stable-diffusion"))
    settings.outdir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(settings)
    catalog.refresh()
    models = FakeModels(catalog)
    queue = JobQueue(FakeEngine(settings, models).run, db_path=settings.queue_db_path, preview_every=2)
    return Services(settings=settings, catalog=catalog, models=models, engine=FakeEngine(settings, models),
                    queue=queue, options=Options(settings.outdir / "config.json"))
