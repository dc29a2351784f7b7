"""Services: a wildcard file added while the app runs is used after a refresh."""
from types import SimpleNamespace

from webui.services import Services


def test_refresh_wildcards_reaches_the_engine(settings):
    settings.wildcards_dir.mkdir(parents=True)
    engine = SimpleNamespace(wildcards=None)
    services = Services(settings=settings, catalog=None, models=None, engine=engine, queue=None, options=None)
    services.refresh_wildcards()
    assert engine.wildcards.names() == []
    (settings.wildcards_dir / "fruit.txt").write_text("apple\npear\n")
    services.refresh_wildcards()
    assert engine.wildcards.names() == ["fruit"]
    expanded, warnings = engine.wildcards.expand("a __fruit__", seed=1)
    assert expanded in ("a apple", "a pear") and not warnings
