"""``python launch.py [launcher flags] [app flags]``: set up ``.venv`` for this machine, then start app.py.

Launcher flags (A1111's spellings) are read here; every other flag goes to
``app.py`` unchanged (``python app.py --help`` lists those). ``COMMANDLINE_ARGS``
adds flags, ``VENV_DIR`` moves the venv, ``TORCH_INDEX_URL`` / ``TORCH_COMMAND``
choose the torch install, as in A1111's ``webui-user`` files.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from webui.launcher.environment import Project, Setup, SetupError
from webui.launcher.machine import probe_machine
from webui.launcher.torch_choice import TorchChoiceError, choose_torch

ROOT = Path(__file__).resolve().parent.parent.parent
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="launch.py", allow_abbrev=False, add_help=False,
        epilog="Every other flag is passed to app.py (listed below once .venv exists).",
        description="Set up .venv with the right torch for this machine (once), then start the web UI.")
    p.add_argument("-h", "--help", action="store_true", help="show the launcher's flags and the app's, then exit")
    p.add_argument("--prepare-only", action="store_true", help="set up the venv and exit without starting the app")
    p.add_argument("--skip-prepare-environment", action="store_true",
                   help="start the app with the venv as it is: no set-up at all")
    p.add_argument("--skip-install", action="store_true", help="create the venv if missing, but install nothing")
    p.add_argument("--skip-torch-install", action="store_true",
                   help="leave torch alone: use the torch already in the venv (requirements.txt's torch pins are skipped)")
    p.add_argument("--reinstall-torch", action="store_true", help="remove and install torch again (after a GPU or driver change)")
    p.add_argument("--rocm", action="store_true", help="install the ROCm build of torch (AMD GPUs on Linux)")
    p.add_argument("--dry-run", action="store_true", help="print the machine and the torch choice, change nothing")
    p.add_argument("--skip-python-version-check", action="store_true", help="no warning for a Python other than 3.11")
    # A1111's macOS settings pass this; here --device and --precision are checked by the app itself.
    p.add_argument("--skip-torch-cuda-test", action="store_true", help=argparse.SUPPRESS)
    return p


def split_words(text: str, windows: bool) -> list[str]:
    """Words of a ``COMMANDLINE_ARGS`` value; on Windows backslashes are path separators, not escapes."""
    if not windows:
        return shlex.split(text)
    words = shlex.split(text, posix=False)
    return [w[1:-1] if len(w) > 1 and w[0] == w[-1] and w[0] in "\"'" else w for w in words]


def split_args(argv: list[str], env: dict[str, str], windows: bool | None = None) -> tuple[argparse.Namespace, list[str]]:
    """(launcher flags, flags for app.py) from the command line plus ``COMMANDLINE_ARGS``."""
    windows = sys.platform.startswith("win") if windows is None else windows
    return parser().parse_known_args([*argv, *split_words(env.get("COMMANDLINE_ARGS", ""), windows)])


def start_app(python: Path, app_args: list[str]) -> int:
    """Run app.py with the venv's Python; on POSIX the launcher becomes the app (signals reach it directly)."""
    env = {**os.environ, **OFFLINE_ENV}
    command = [str(python), str(ROOT / "app.py"), *app_args]
    if os.name == "posix":
        os.execve(command[0], command, env)
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 130


def prepare(args: argparse.Namespace, env: dict[str, str], setup: Setup) -> int | None:
    """The set-up the flags ask for; an exit code when the launcher should stop here."""
    torch = None
    if not args.skip_torch_install and (args.dry_run or not args.skip_install):
        machine = probe_machine()
        torch = choose_torch(machine, rocm=args.rocm, env=env)
        print(f"machine: {machine.os} {machine.arch}, GPU: {machine.gpu}; {torch.describe()}")
    if args.dry_run:
        print("torch install:", "python -m " + " ".join(torch.pip_args) if torch else "skipped")
        return 0
    other_python = sys.version_info[:2] != (3, 11) and not args.skip_python_version_check
    if other_python and not setup.project.python.exists():
        print(f"warning: this is Python {sys.version.split()[0]}; the web UI is tested with Python 3.11",
              file=sys.stderr)
    setup.ensure_venv()
    if not args.skip_install:
        setup.install(torch, reinstall_torch=args.reinstall_torch)
        setup.convert_realesrgan()
    return 0 if args.prepare_only else None


def main(argv: list[str] | None = None) -> int:
    env = dict(os.environ)
    args, app_args = split_args(sys.argv[1:] if argv is None else argv, env)
    project = Project(ROOT, Path(env.get("VENV_DIR") or ROOT / ".venv").resolve())
    if args.help:
        print(parser().format_help())
        if project.python.exists():
            return subprocess.call([str(project.python), str(ROOT / "app.py"), "--help"])
        return 0
    if not args.skip_prepare_environment:
        try:
            code = prepare(args, env, Setup(project))
        except (TorchChoiceError, SetupError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if code is not None:
            return code
    if args.prepare_only:
        return 0
    if not project.python.exists():
        print(f"error: no Python in {project.venv}; run without --skip-prepare-environment once", file=sys.stderr)
        return 2
    return start_app(project.python, app_args)
