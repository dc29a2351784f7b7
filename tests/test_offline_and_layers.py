"""The suite runs with the network blocked, the engine stays free of UI and HTTP code, and the layers hold."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent


def test_any_connection_off_this_machine_fails_the_test():
    with pytest.raises(RuntimeError, match="tried to"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    with pytest.raises(RuntimeError, match="tried to"):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("203.0.113.7", 443))


def test_loopback_stays_allowed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=2)
    client.close()
    server.close()


def test_engine_imports_neither_gradio_nor_fastapi():
    code = ("import sys, webui.engine.engine, webui.models.manager, webui.prompts, webui.postprocess, webui.scripts; "
            "bad = [m for m in ('gradio', 'fastapi', 'uvicorn', 'starlette') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_importing_the_package_starts_nothing():
    code = ("import threading, webui.server, webui.jobs, webui.api, webui.ui; "
            "import sys; sys.exit(threading.active_count() - 1)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_import_contracts_hold():
    """`.importlinter`'s contracts: ui/api -> jobs -> engine -> models... -> catalog -> detection, no way back up,
    and no gradio or HTTP code below the edges."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout and "4 kept" in done.stdout
