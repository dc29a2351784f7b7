"""Shared fixtures: the network guard and tiny checkpoints written in the real single-file layout."""
from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


class NetworkBlocked(RuntimeError):
    """Raised when code under test tries to reach anything but this machine."""


def _is_local(host) -> bool:
    if host in (None, "", "localhost") or (isinstance(host, str) and host.endswith(".localhost")):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _install_network_guard() -> None:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def guarded_connect(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            raise NetworkBlocked(f"test tried to connect to {address!r}")
        return real_connect(self, address, *args)

    def guarded_connect_ex(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            raise NetworkBlocked(f"test tried to connect to {address!r}")
        return real_connect_ex(self, address, *args)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _is_local(host if not isinstance(host, bytes) else host.decode()):
            raise NetworkBlocked(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded_connect
    socket.socket.connect_ex = guarded_connect_ex
    socket.getaddrinfo = guarded_getaddrinfo


def pytest_configure(config):
    _install_network_guard()
    import torch

    torch.set_num_threads(int(os.environ.get("WEBUI_TEST_THREADS", "1")))


# ------------------------------------------------------------------ tiny checkpoints
@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tmp_path_factory) -> Path:
    """Tiny random checkpoints for each family, written once per test session."""
    from tests.random_checkpoint import write_random_checkpoint

    folder = tmp_path_factory.mktemp("tiny-checkpoints")
    write_random_checkpoint(folder / "tiny-sd1.safetensors", "sd1", seed=1)
    write_random_checkpoint(folder / "tiny-sd1-b.safetensors", "sd1", seed=2)
    write_random_checkpoint(folder / "tiny-sd1-inpainting.safetensors", "sd1", inpainting=True, seed=3)
    write_random_checkpoint(folder / "tiny-sdxl.safetensors", "sdxl", seed=4)
    return folder


@pytest.fixture
def models_dir(tmp_path, tiny_checkpoint_dir) -> Path:
    """A models/ folder in A1111's layout holding the tiny SD1 checkpoint (and empty kind folders)."""
    root = tmp_path / "models"
    for kind in ("Stable-diffusion", "Lora", "VAE", "embeddings", "ESRGAN", "RealESRGAN", "GFPGAN", "Codeformer"):
        (root / kind).mkdir(parents=True)
    shutil.copy(tiny_checkpoint_dir / "tiny-sd1.safetensors", root / "Stable-diffusion")
    return root


@pytest.fixture
def settings(tmp_path, models_dir):
    from webui.config import Settings

    return Settings(models_dir=models_dir, outdir=tmp_path / "outputs", wildcards_dir=tmp_path / "wildcards",
                    styles_file=tmp_path / "styles.csv", device="cpu", precision="fp32")


@pytest.fixture
def serve_app():
    """Start the real app wiring (engine, model manager, queue) for some settings; returns (client, services).

    The TestClient talks to it at 127.0.0.1, one of the Host names the server answers to by default.
    """
    from fastapi.testclient import TestClient

    from webui.server import build_services, create_app

    started = []

    def start(settings):
        services = build_services(settings)
        services.queue.start()
        started.append(services)
        client = TestClient(create_app(services, with_ui=False), raise_server_exceptions=False,
                            base_url="http://127.0.0.1")
        return client, services

    yield start
    for services in started:
        services.queue.close()
