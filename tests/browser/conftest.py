"""Browser harness: Debian's chromium driven by Playwright (sync API) against the app run as a subprocess.

``fake_app`` serves the real UI over a fake engine (tests/browser/serve_fake.py);
each server gets a free loopback port, a temporary models folder with tiny
checkpoint files and a temporary outputs folder, and is stopped by its own
process id. Every test's ``page`` leaves a screenshot in test-artifacts/.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("WEBUI_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - reported as a skip with the set-up command
    sync_playwright = None


def _missing_browser() -> str | None:
    if sync_playwright is None:
        return "playwright is not installed: run .ci/browser-setup.sh"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found: run .ci/browser-setup.sh"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing_browser()
    if reason and os.environ.get("CI"):
        # In CI the set-up script installs the browser: a missing one is a failure, never a silent skip.
        raise pytest.UsageError(f"browser tests cannot run: {reason}")
    for item in items:
        if "tests/browser" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a real chromium against the running app")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningApp:
    url: str
    process: subprocess.Popen
    models_dir: Path
    outdir: Path
    input_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def start_app(command: list[str], root: Path, models_dir: Path, outdir: Path, timeout: float = 120,
              ready_status=(200,)) -> RunningApp:
    """Start ``command`` (it gets ``--port``) and wait until the page answers (with one of ``ready_status``)."""
    port = free_port()
    log_path = root / "server.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    with log_path.open("wb") as log:
        process = subprocess.Popen([*command, "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    app = RunningApp(f"http://127.0.0.1:{port}/", process, models_dir, outdir, root / "inputs", log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited with {process.returncode}:\n{app.log()}")
        try:
            with urllib.request.urlopen(app.url, timeout=2) as response:
                if response.status in ready_status:
                    return app
        except urllib.error.HTTPError as error:  # a server that wants a sign-in answers 401
            if error.code in ready_status:
                return app
            time.sleep(0.5)
        except OSError:
            time.sleep(0.5)
    stop_app(app)
    raise RuntimeError(f"app did not answer within {timeout}s:\n{app.log()}")


def stop_app(app: RunningApp) -> None:
    """Stop the server by its own process id (its process group holds only what it started)."""
    if app.process.poll() is None:
        os.killpg(app.process.pid, signal.SIGTERM)
        try:
            app.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(app.process.pid, signal.SIGKILL)
            app.process.wait(timeout=10)


@pytest.fixture(scope="session")
def fake_app(tmp_path_factory):
    """The real UI over a fake engine, with two listed checkpoint files."""
    if _missing_browser():
        pytest.skip(_missing_browser())
    sys.path.insert(0, str(ROOT))
    from tests.browser.fake_stack import write_fake_checkpoints

    root = tmp_path_factory.mktemp("fake_app")
    models, outdir = root / "models", root / "outputs"
    write_fake_checkpoints(models / "Stable-diffusion", ("tiny-a.ckpt", "tiny-b.ckpt", "zz-removed.ckpt"))
    demo_lora = ROOT / "models" / "Lora" / "demo-outline.safetensors"
    if demo_lora.exists():
        (models / "Lora").mkdir(parents=True)
        shutil.copyfile(demo_lora, models / "Lora" / demo_lora.name)
    (root / "wildcards").mkdir()
    (root / "wildcards" / "animal.txt").write_text("cat\ndog\n")
    (root / "styles.csv").write_text('name,prompt,negative_prompt\n"Bright","{prompt}, bright colours",""\n')
    command = [sys.executable, str(ROOT / "tests" / "browser" / "serve_fake.py"), "--models-dir", str(models),
               "--outdir", str(outdir), "--wildcards-dir", str(root / "wildcards"), "--styles-file",
               str(root / "styles.csv")]
    app = start_app(command, root, models, outdir)
    yield app
    stop_app(app)


DEMO_CHECKPOINT = ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"


def copy_with_own_hash(source: Path, target: Path) -> None:
    """The same weights under another file hash (a metadata entry differs), so each copy is its own model."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    metadata["copy_name"] = target.name
    save_file(tensors, str(target), metadata=metadata)


@pytest.fixture(scope="session")
def real_app(tmp_path_factory):
    """``python app.py`` with the real engine on the shipped demo checkpoint (twice, under two names)."""
    if _missing_browser():
        pytest.skip(_missing_browser())
    if not DEMO_CHECKPOINT.exists():
        pytest.fail(f"{DEMO_CHECKPOINT} is missing: the real-app flows need the shipped demo checkpoint")
    root = tmp_path_factory.mktemp("real_app")
    models, outdir = root / "models", root / "outputs"
    (models / "Stable-diffusion").mkdir(parents=True)
    for name in ("demo-shapes.safetensors", "demo-second.safetensors", "zz-removed.safetensors"):
        copy_with_own_hash(DEMO_CHECKPOINT, models / "Stable-diffusion" / name)
    command = [sys.executable, str(ROOT / "app.py"), "--models-dir", str(models), "--outdir", str(outdir),
               "--threads", "1", "--device", "cpu"]
    app = start_app(command, root, models, outdir, timeout=180)
    yield app
    stop_app(app)


@pytest.fixture
def real_page(real_app, new_page):
    return new_page(real_app.url)


@pytest.fixture(scope="session")
def browser():
    if _missing_browser():
        pytest.skip(_missing_browser())
    with sync_playwright() as playwright:
        # Playwright gives each launch a fresh temporary profile (the --user-data-dir).
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _is_trouble(message) -> bool:
    """A console error, or a lost WebGL context (the image editor draws with WebGL; Chromium warns of it)."""
    return message.type == "error" or "context lost" in message.text.lower() or "CONTEXT_LOST" in message.text


@pytest.fixture
def new_page(browser, request):
    """Factory of pages (each its own browser context = its own session); screenshots on teardown."""
    pages = []

    def make(url: str):
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        page = context.new_page()
        page.webui_errors = []  # read by ui.page_errors when a flow fails
        page.on("pageerror", lambda error: page.webui_errors.append(f"script error: {error}"))
        page.on("console", lambda message: _is_trouble(message)
                and page.webui_errors.append(f"console {message.type}: {message.text}"))
        page.set_default_timeout(20_000)
        page.goto(url)
        page.wait_for_selector("#txt2img_generate")
        pages.append(page)
        return page

    yield make
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for number, page in enumerate(pages):
        suffix = f"-{number}" if number else ""
        try:
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}{suffix}.png"), full_page=True)
        except Exception as exc:  # a broken page must not hide the test's own failure
            print(f"screenshot failed: {exc}")
        page.context.close()


@pytest.fixture
def page(fake_app, new_page):
    return new_page(fake_app.url)


def pytest_sessionfinish(session, exitstatus):
    # Keep the screenshots of a failing run only; a green run leaves nothing behind.
    if exitstatus == 0 and ARTIFACTS.exists() and not os.environ.get("WEBUI_KEEP_SCREENSHOTS"):
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
