"""Files that behave the same on Windows, macOS and Linux: atomic replaces, model names in any case."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from webui import fileio
from webui.catalog import Catalog
from webui.fileio import atomic_write_bytes, atomic_write_text, replace_file
from webui.models.manager import ModelManager
from webui.options import Options
from webui.prompts.styles import StyleDatabase

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- atomic writes
def test_atomic_write_replaces_an_existing_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "config.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "zweite – ünïcode")
    assert target.read_bytes() == "zweite – ünïcode".encode("utf-8")  # UTF-8 whatever the locale
    assert [p.name for p in target.parent.iterdir()] == ["config.json"]


def test_atomic_write_replaces_a_file_that_a_reader_holds_open(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with target.open("rb") as reader:
        atomic_write_bytes(target, b"new")
        assert reader.read() == b"old"  # the reader keeps the complete old file
    assert target.read_bytes() == b"new"


def test_a_replace_refused_while_the_target_is_in_use_is_retried(tmp_path, monkeypatch):
    # Windows answers PermissionError while another process holds the target open.
    real_replace, refusals = os.replace, []

    def busy_twice(source, target):
        if len(refusals) < 2:
            refusals.append(target)
            raise PermissionError(13, "The process cannot access the file because it is being used")
        real_replace(source, target)

    monkeypatch.setattr(fileio.os, "replace", busy_twice)
    target = tmp_path / "options.json"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and len(refusals) == 2


def test_a_replace_refused_for_good_raises_and_keeps_the_old_file(tmp_path, monkeypatch):
    def always_busy(source, target):
        raise PermissionError(13, "in use")

    monkeypatch.setattr(fileio.os, "replace", always_busy)
    target = tmp_path / "styles.csv"
    target.write_text("old")
    with pytest.raises(PermissionError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["styles.csv"]


def test_replace_file_does_not_retry_other_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        replace_file(tmp_path / "missing", tmp_path / "target", delay_s=10)  # would take seconds if retried


def test_options_and_styles_save_over_their_previous_file(tmp_path):
    path = tmp_path / "config.json"
    Options(path).update({"samples_format": "jpg"})
    Options(path).update({"samples_format": "webp"})
    assert Options(path).get("samples_format") == "webp"
    styles_file = tmp_path / "styles.csv"
    styles_file.write_text("name,prompt,negative_prompt\nold,a,b\n", encoding="utf-8")
    styles = StyleDatabase.load(styles_file)
    styles.save(styles_file)
    assert StyleDatabase.load(styles_file).to_csv_text() == styles.to_csv_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "styles.csv"]


# ---------------------------------------------------------------- model names in any case
def test_model_files_with_upper_case_extensions_are_listed_and_loaded(settings, tiny_checkpoint_dir):
    folder = settings.model_folder("Stable-diffusion")
    (folder / "tiny-sd1.safetensors").rename(folder / "Mixed.SafeTensors")
    state = load_file(str(tiny_checkpoint_dir / "tiny-sd1-b.safetensors"))
    torch.save({"state_dict": state}, folder / "OLD.CKPT")
    vae = {k[len("first_stage_model."):]: v for k, v in state.items() if k.startswith("first_stage_model.")}
    save_file(vae, str(folder / "Mixed.VAE.SafeTensors"))  # a VAE: beside its checkpoint, never listed as one
    catalog = Catalog(settings)
    catalog.refresh()
    names = sorted(info.name for info in catalog.checkpoints())
    assert names == ["Mixed.SafeTensors", "OLD.CKPT"]
    pickle = catalog.find_checkpoint("OLD.CKPT")
    assert pickle.loadable and catalog.find_checkpoint("Mixed").loadable
    assert catalog.vae_beside(catalog.find_checkpoint("Mixed.SafeTensors")) == folder / "Mixed.VAE.SafeTensors"
    manager = ModelManager(settings, catalog)
    loaded = manager.ensure(pickle)
    assert manager.current_checkpoint.name == "OLD.CKPT" and loaded.unet is not None


# ---------------------------------------------------------------- no POSIX-only calls in the app
POSIX_ONLY = re.compile(r"\bimport fcntl\b|\bos\.(getuid|geteuid|fork|killpg|setsid|chown)\b|\bsignal\.SIG(KILL|HUP|USR1|USR2)\b"
                        r"|\bos\.rename\(|['\"]/tmp/")


def test_the_app_uses_no_posix_only_calls():
    sources = [ROOT / "app.py", ROOT / "launch.py", *sorted((ROOT / "webui").rglob("*.py"))]
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                 for path in sources for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if POSIX_ONLY.search(line)]
    assert offenders == []


def test_names_written_on_windows_with_backslashes_find_models_in_subfolders(settings, tiny_checkpoint_dir):
    from tests.test_api_support import write_header_checkpoint

    sub = settings.model_folder("Stable-diffusion") / "sub"
    sub.mkdir()
    write_header_checkpoint(sub / "model.safetensors")
    (settings.model_folder("Lora") / "styles").mkdir()
    shutil.copy(tiny_checkpoint_dir / "tiny-sd1.safetensors", settings.model_folder("Lora") / "styles" / "ink.safetensors")
    catalog = Catalog(settings)
    catalog.refresh()
    info = catalog.find_checkpoint("sub\\model.safetensors")
    assert info.name == "sub/model.safetensors"
    assert catalog.find_checkpoint(f"sub\\model [{info.short_hash}]") == info
    assert catalog.find_lora("styles\\ink").name == "styles/ink"
