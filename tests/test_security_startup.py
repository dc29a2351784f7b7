"""Start-up under attack or accident: --listen without sign-in, a damaged or busy queue database, a disguised model."""
from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app import main, parse_args, security_from_args, startup_refusal
from webui.config import Settings
from webui.startup import StartupError, claim_queue_db, release_queue_db

ROOT = Path(__file__).resolve().parent.parent


def test_listen_without_any_sign_in_refuses_to_start(capsys):
    assert main(["--listen"]) == 2
    assert "--gradio-auth" in capsys.readouterr().err
    assert startup_refusal(parse_args(["--listen", "--gradio-auth", "a:b"])) is None
    assert startup_refusal(parse_args(["--listen", "--insecure-no-auth"])) is None
    assert "tls" in startup_refusal(parse_args(["--tls-keyfile", "k.pem"]))


def test_auth_flags_in_a1111_form_build_hashed_users(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("carol:pa:ss\ndave:secret\n")
    args = parse_args(["--gradio-auth", "alice:wonderland,bob:builder", "--gradio-auth-path", str(users),
                       "--api-auth", "script:token", "--admin-users", "alice", "--allowed-hosts", "sd.lan"])
    policy = security_from_args(args, Settings(outdir=tmp_path), 1000)
    assert sorted(policy.ui_users.names) == ["alice", "bob", "carol", "dave"]
    assert policy.ui_users.verify("carol", "pa:ss") and not policy.ui_users.verify("carol", "pa")
    assert policy.api_users.verify("script", "token") and not policy.api_users.verify("alice", "wonderland")
    assert "wonderland" not in repr(vars(policy.ui_users))
    assert policy.host_allowed("sd.lan:7860") and not policy.host_allowed("evil.example")
    with pytest.raises(ValueError, match="user:password"):
        security_from_args(parse_args(["--api-auth", "nopassword"]), Settings(outdir=tmp_path), 1000)


def test_corrupt_queue_database_is_moved_aside_and_a_new_one_made(tmp_path, caplog):
    db = tmp_path / "queue.sqlite3"
    db.write_bytes(b"this is not a database at all" * 100)
    claim_queue_db(db)
    kept = list(tmp_path.glob("queue.sqlite3.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not")
    assert not db.exists() or db.stat().st_size == 0
    assert "could not be read" in caplog.text
    from webui.jobs import JobQueue

    JobQueue(lambda *a: None, db_path=db).close()  # a new, working queue
    release_queue_db(db)


def test_queue_database_in_use_by_another_process_names_it(tmp_path):
    db = tmp_path / "queue.sqlite3"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "queue.sqlite3.pid").write_text(str(holder.pid))
        with pytest.raises(StartupError, match=f"process {holder.pid}"):
            claim_queue_db(db)
    finally:
        holder.kill()
        holder.wait()
    claim_queue_db(db)  # a dead holder's claim is stale
    assert (tmp_path / "queue.sqlite3.pid").read_text() == str(os.getpid())
    release_queue_db(db)


def test_locked_queue_database_is_reported_not_a_traceback(tmp_path):
    db = tmp_path / "queue.sqlite3"
    locker = sqlite3.connect(str(db), isolation_level=None)
    locker.execute("CREATE TABLE t (x)")
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StartupError, match="locked"):
            claim_queue_db(db)
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_the_server_reports_a_held_queue_and_exits(tmp_path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (outdir / "queue.sqlite3.pid").write_text(str(holder.pid))
        run = subprocess.run([sys.executable, "app.py", "--outdir", str(outdir), "--models-dir", str(tmp_path / "m"),
                              "--no-ui", "--port", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode == 2
    assert f"in use by process {holder.pid}" in run.stderr and "Traceback" not in run.stderr


def test_a_pickle_named_safetensors_is_unreadable_and_never_the_default(tmp_path):
    from webui.catalog import Catalog

    settings = Settings(models_dir=tmp_path / "models", outdir=tmp_path / "out")
    folder = settings.model_folder("Stable-diffusion")
    folder.mkdir(parents=True)
    (folder / "a-disguised.SafeTensors").write_bytes(pickle.dumps({"state_dict": {}}))
    (folder / "b-honest.ckpt").write_bytes(b"PK\x03\x04 a checkpoint")
    catalog = Catalog(settings)
    catalog.refresh()
    assert [c.name for c in catalog.rejected_checkpoints()] == ["a-disguised.SafeTensors"]
    assert catalog.default_checkpoint().name == "b-honest.ckpt"


def test_listen_answers_to_the_machines_own_addresses_only(tmp_path):
    import psutil
    import socket

    args = parse_args(["--listen", "--gradio-auth", "a:b"])
    from app import settings_from_args

    policy = security_from_args(args, settings_from_args(args).with_changes(outdir=tmp_path), 1000)
    addresses = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family == socket.AF_INET]
    assert all(policy.host_allowed(f"{address}:7860") for address in addresses)
    assert not policy.host_allowed("rebind.attacker.example:7860")
