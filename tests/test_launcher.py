"""The launcher: its torch choice for every OS/GPU, the venv set-up steps, and the wrappers that call it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from webui.launcher.environment import Project, Setup, SetupError, venv_python, without_torch
from webui.launcher.machine import Machine, normalise_arch, os_name, parse_nvidia_smi
from webui.launcher.main import split_args
from webui.launcher.torch_choice import TORCH_PACKAGES, TorchChoiceError, TorchInstall, choose_torch

ROOT = Path(__file__).resolve().parent.parent
WHL = "https://download.pytorch.org/whl"


# ---------------------------------------------------------------- torch choice
@pytest.mark.parametrize("machine, rocm, build, index", [
    (Machine("linux", "x86_64"), False, "default", None),  # CI and this project's CPU machines: PyPI
    (Machine("linux", "arm64"), False, "default", None),
    (Machine("windows", "x86_64"), False, "default", None),  # PyPI's Windows wheels are CPU-only
    (Machine("windows", "arm64"), False, "default", None),
    (Machine("macos", "arm64", gpu="apple"), False, "default", None),  # MPS is in PyPI's wheels
    (Machine("linux", "x86_64", "nvidia", (13, 1), "590.10"), False, "cu130", f"{WHL}/cu130"),
    (Machine("linux", "x86_64", "nvidia", (13, 0), "580.65"), False, "cu130", f"{WHL}/cu130"),
    (Machine("linux", "x86_64", "nvidia", (12, 9), "575.51"), False, "cu128", f"{WHL}/cu128"),
    (Machine("linux", "arm64", "nvidia", (12, 8), "570.86"), False, "cu128", f"{WHL}/cu128"),
    (Machine("linux", "x86_64", "nvidia", (12, 6), "560.35"), False, "cu126", f"{WHL}/cu126"),
    (Machine("linux", "x86_64", "nvidia", None, ""), False, "cu126", f"{WHL}/cu126"),  # driver did not say
    (Machine("windows", "x86_64", "nvidia", (12, 8), "572.16"), False, "cu128", f"{WHL}/cu128"),
    (Machine("windows", "x86_64", "nvidia", (13, 0), "581.15"), False, "cu130", f"{WHL}/cu130"),
    (Machine("linux", "x86_64", "amd"), False, "rocm6.4", f"{WHL}/rocm6.4"),  # /opt/rocm found
    (Machine("linux", "x86_64"), True, "rocm6.4", f"{WHL}/rocm6.4"),  # --rocm
    (Machine("linux", "x86_64", "nvidia", (12, 8)), True, "rocm6.4", f"{WHL}/rocm6.4"),  # asked for wins
])
def test_torch_build_and_index_for_each_machine(machine, rocm, build, index):
    choice = choose_torch(machine, rocm=rocm, env={})
    assert choice.build == build
    assert choice.index_url == index
    # The pinned versions everywhere; only the index differs.
    assert choice.pip_args[:2] == ("pip", "install") and set(TORCH_PACKAGES) <= set(choice.pip_args)
    assert choice.reason


@pytest.mark.parametrize("machine, rocm, words", [
    (Machine("macos", "x86_64"), False, "Intel Macs"),
    (Machine("linux", "x86_64", "nvidia", (12, 4), "550.54"), False, "update the NVIDIA driver"),
    (Machine("linux", "x86_64", "nvidia", (11, 8), "520.61"), False, "CUDA 11.8"),
    (Machine("windows", "x86_64"), True, "Linux only"),
    (Machine("macos", "arm64", gpu="apple"), True, "Linux only"),
])
def test_machines_without_a_pinned_build_get_a_message_saying_what_to_do(machine, rocm, words):
    with pytest.raises(TorchChoiceError, match=words):
        choose_torch(machine, rocm=rocm, env={})


@pytest.mark.parametrize("machine", [Machine("macos", "x86_64"), Machine("linux", "x86_64", "nvidia", (12, 8)),
                                     Machine("windows", "x86_64")])
def test_torch_index_url_and_torch_command_override_the_choice(machine):
    mirror = "https://mirror.example/whl/cpu"
    by_index = choose_torch(machine, env={"TORCH_INDEX_URL": mirror})
    assert by_index.index_url == mirror and by_index.build == "custom"
    assert set(TORCH_PACKAGES) <= set(by_index.pip_args)
    own = choose_torch(machine, rocm=True, env={"TORCH_COMMAND": "pip install torch==2.9.0 --extra-index-url 'https://x/y z'",
                                                "TORCH_INDEX_URL": mirror})
    assert own.pip_args == ("pip", "install", "torch==2.9.0", "--extra-index-url", "https://x/y z")


NVIDIA_SMI = """
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: 12.8     |
|-----------------------------------------+------------------------+----------------------+
"""


def test_machine_description_from_nvidia_smi_and_platform_names():
    assert parse_nvidia_smi(NVIDIA_SMI) == ((12, 8), "570.86.15")
    assert parse_nvidia_smi("") == (None, "")
    assert [normalise_arch(a) for a in ("AMD64", "x86_64", "aarch64", "arm64")] == ["x86_64", "x86_64", "arm64", "arm64"]
    assert [os_name(p) for p in ("win32", "darwin", "linux")] == ["windows", "macos", "linux"]


def _fake_program(folder: Path, name: str, output: str) -> None:
    program = folder / name
    program.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\n")
    program.chmod(0o755)


@pytest.mark.skipif(sys.platform == "win32", reason="the fake nvidia-smi is a shell script")
@pytest.mark.parametrize("program, output, expected", [
    ("nvidia-smi", NVIDIA_SMI, f"--index-url {WHL}/cu128"),
    ("nvidia-smi", NVIDIA_SMI.replace("12.8", "13.0"), f"--index-url {WHL}/cu130"),
    ("rocminfo", "ROCk module is loaded", f"--index-url {WHL}/rocm6.4"),
])
def test_the_launcher_finds_the_gpu_through_its_tools(tmp_path, program, output, expected):
    _fake_program(tmp_path, program, output)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-S", str(ROOT / "launch.py"), "--dry-run"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(expected)


# ---------------------------------------------------------------- set-up steps
class Recorder:
    """Stands in for subprocess at the edge: records commands, creates the venv's interpreter."""

    def __init__(self, fail_on: str | None = None):
        self.commands: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, command):
        self.commands.append(list(command))
        if command[1:3] == ["-m", "venv"]:
            python = venv_python(Path(command[3]))
            python.parent.mkdir(parents=True)
            python.touch()
        return 1 if self.fail_on and self.fail_on in " ".join(command) else 0

    def pip_verbs(self):
        return [" ".join(c[3:5]) for c in self.commands if c[1:3] == ["-m", "pip"]]


def make_project(tmp_path) -> Project:
    (tmp_path / "requirements.txt").write_text("torch==2.14.1\ntorchvision==0.29.1\ntorchsde\ndiffusers==0.42.1\n")
    (tmp_path / "requirements-nodeps.txt").write_text("facenet-pytorch==2.6.0\n")
    project = Project(tmp_path, tmp_path / ".venv")
    Setup(project, Recorder(), log=lambda _: None).ensure_venv()
    return project


CPU = choose_torch(Machine("linux", "x86_64"), env={})
CUDA = choose_torch(Machine("linux", "x86_64", "nvidia", (12, 8)), env={})


def test_first_setup_installs_torch_then_requirements_then_nodeps_and_a_second_does_nothing(tmp_path):
    (tmp_path / "requirements.txt").write_text("torchsde\n")
    project, runner = Project(tmp_path, tmp_path / ".venv"), Recorder()
    setup = Setup(project, runner, log=lambda _: None)
    setup.ensure_venv("python3.11")
    assert runner.commands[0] == ["python3.11", "-m", "venv", str(project.venv)]
    assert setup.install(CUDA) is True
    pips = [c for c in runner.commands if c[1:3] == ["-m", "pip"]]
    assert pips[1][3:] == ["install", "torch==2.14.1", "torchvision==0.29.1", "--index-url", f"{WHL}/cu128",
                           "--quiet", "--disable-pip-version-check"]
    assert pips[2][-2:] == ["-r", str(project.requirements)]
    assert len(pips) == 3  # no requirements-nodeps.txt here: no --no-deps step
    count = len(runner.commands)
    setup.ensure_venv("python3.11")
    assert setup.install(CUDA) is False and len(runner.commands) == count


def test_nodeps_requirements_are_installed_without_their_dependencies(tmp_path):
    project, runner = make_project(tmp_path), Recorder()
    Setup(project, runner, log=lambda _: None).install(CPU)
    assert "--no-deps" in runner.commands[-1] and runner.commands[-1][-1] == str(project.requirements_nodeps)


def test_changed_requirements_install_again_without_touching_torch(tmp_path):
    project, runner = make_project(tmp_path), Recorder()
    setup = Setup(project, runner, log=lambda _: None)
    setup.install(CPU)
    runner.commands.clear()
    project.requirements.write_text(project.requirements.read_text() + "pillow\n")
    assert setup.install(CPU) is True
    assert "uninstall --yes" not in runner.pip_verbs()


def test_another_torch_build_or_reinstall_torch_removes_the_old_torch_first(tmp_path):
    project, runner = make_project(tmp_path), Recorder()
    setup = Setup(project, runner, log=lambda _: None)
    setup.install(CPU)
    runner.commands.clear()
    setup.install(CUDA)  # a GPU appeared: pip would call the same version "already installed"
    assert runner.pip_verbs()[1:3] == ["uninstall --yes", "install torch==2.14.1"]
    runner.commands.clear()
    assert setup.install(CUDA, reinstall_torch=True) is True
    assert "uninstall --yes" in runner.pip_verbs()


def test_skip_torch_install_leaves_torch_out_of_every_step(tmp_path):
    project, runner = make_project(tmp_path), Recorder()
    Setup(project, runner, log=lambda _: None).install(None)
    assert not any("torch==" in " ".join(c) for c in runner.commands)
    used = Path(next(c[-1] for c in runner.commands if "-r" in c and "--no-deps" not in c))
    assert used.read_text() == "torchsde\ndiffusers==0.42.1\n"


def test_a_failing_step_names_its_command_and_writes_no_stamp(tmp_path):
    project = make_project(tmp_path)
    with pytest.raises(SetupError, match="exit code 1 from: .*-r .*requirements.txt"):
        Setup(project, Recorder(fail_on="requirements.txt"), log=lambda _: None).install(CPU)
    assert not project.stamp.exists()


def test_without_torch_keeps_packages_that_only_start_with_torch():
    text = "torch==2.14.1\nTorchVision>=0.2  # pinned\ntorch\ntorchsde\ntorch-fidelity\n# torch comment\n"
    assert without_torch(text) == "torchsde\ntorch-fidelity\n# torch comment\n"


def test_venv_interpreter_path_per_os(tmp_path):
    assert venv_python(tmp_path, windows=True) == tmp_path / "Scripts" / "python.exe"
    assert venv_python(tmp_path, windows=False) == tmp_path / "bin" / "python"


# ---------------------------------------------------------------- command line
def test_launcher_flags_are_taken_and_every_other_flag_goes_to_the_app():
    args, app = split_args(["--port", "7861", "--rocm", "--device", "cpu", "--precision", "fp32"],
                           {"COMMANDLINE_ARGS": "--listen --skip-torch-install"})
    assert args.rocm and args.skip_torch_install and not args.prepare_only
    assert app == ["--port", "7861", "--device", "cpu", "--precision", "fp32", "--listen"]
    # A1111's macOS COMMANDLINE_ARGS carry a launcher flag that has nothing to do here: taken, not passed on.
    _, app = split_args([], {"COMMANDLINE_ARGS": "--skip-torch-cuda-test --port 7862"})
    assert app == ["--port", "7862"]


def test_commandline_args_keep_windows_paths_whole():
    _, app = split_args([], {"COMMANDLINE_ARGS": r'--outdir "C:\My Images\sd" --ckpt-dir D:\models'}, windows=True)
    assert app == ["--outdir", r"C:\My Images\sd", "--ckpt-dir", r"D:\models"]
    _, app = split_args([], {"COMMANDLINE_ARGS": "--outdir '/srv/my images'"}, windows=False)
    assert app == ["--outdir", "/srv/my images"]


def test_launcher_runs_on_the_bare_standard_library(tmp_path):
    # -S: no site-packages at all, as on a fresh system Python before .venv exists.
    done = subprocess.run([sys.executable, "-S", "-E", str(ROOT / "launch.py"), "--dry-run"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "torch==2.14.1" in done.stdout
    same = subprocess.run([sys.executable, "-S", "-E", "-m", "webui", "--dry-run"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert same.returncode == 0 and same.stdout == done.stdout


def test_a_machine_without_a_torch_build_stops_the_set_up_but_not_a_start_that_installs_nothing(
        tmp_path, monkeypatch, capsys):
    from webui.launcher import main as launcher

    monkeypatch.setattr(launcher, "probe_machine", lambda: Machine("macos", "x86_64"))
    venv = tmp_path / "venv"
    venv_python(venv).parent.mkdir(parents=True)
    venv_python(venv).touch()
    monkeypatch.setenv("VENV_DIR", str(venv))
    monkeypatch.delenv("TORCH_COMMAND", raising=False)
    monkeypatch.delenv("TORCH_INDEX_URL", raising=False)
    assert launcher.main(["--prepare-only"]) == 2
    assert "Intel Macs" in capsys.readouterr().err
    assert launcher.main(["--prepare-only", "--skip-install"]) == 0
    assert launcher.main(["--prepare-only", "--skip-torch-install", "--dry-run"]) == 0
    assert "torch install: skipped" in capsys.readouterr().out


def test_help_lists_the_launcher_flags_and_then_the_apps(tmp_path):
    env = {**os.environ, "VENV_DIR": str(Path(sys.executable).parent.parent)}  # the venv running these tests
    done = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--help"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.index("--reinstall-torch") < done.stdout.index("--precision")
    bare = subprocess.run([sys.executable, "-S", str(ROOT / "launch.py"), "-h"], capture_output=True, text=True,
                          timeout=60, env={"VENV_DIR": str(tmp_path / "none")})
    assert bare.returncode == 0 and "--rocm" in bare.stdout and "--precision" not in bare.stdout


def test_a_missing_venv_with_skip_prepare_environment_is_a_clear_error(tmp_path):
    done = subprocess.run([sys.executable, "-S", str(ROOT / "launch.py"), "--skip-prepare-environment"],
                          capture_output=True, text=True, timeout=60, env={"VENV_DIR": str(tmp_path / "none")})
    assert done.returncode == 2 and "no Python in" in done.stderr


# ---------------------------------------------------------------- wrappers
def _commands(path: Path, comment: str) -> list[str]:
    lines = path.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().lower().startswith(comment)]


def test_webui_sh_and_ensure_env_only_find_python_and_call_the_launcher():
    allowed = [r"#!/usr/bin/env bash", r"set -euo pipefail", r'cd "\$\(dirname "\$0"\)(/\.\.)?"',
               r'PYTHON="\$\{PYTHON:-\$\(command -v python3\.11 \|\| command -v python3\)\}"']
    for name, call in (("webui.sh", 'exec "$PYTHON" launch.py "$@"'),
                       ("scripts/ensure_env.sh", 'exec "$PYTHON" launch.py --prepare-only "$@"')):
        lines = [line for line in (ROOT / name).read_text().splitlines() if line and not line.startswith("# ")]
        assert lines[-1] == call, name
        for line in lines[:-1]:
            assert any(re.fullmatch(pattern, line) for pattern in allowed), f"{name}: {line}"


def test_webui_bat_only_finds_python_and_calls_the_launcher():
    raw = (ROOT / "webui.bat").read_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # cmd.exe wants CRLF
    lines = _commands(ROOT / "webui.bat", "rem ")
    programs = [line for line in lines if "launch.py" in line]
    assert programs == ["%PYTHON% launch.py %*"]
    allowed = [r"@echo off", r'cd /d "%~dp0"', r"if not defined PYTHON \(", r"\)",
               r'py -3\.11 --version >nul 2>&1 && \(set "PYTHON=py -3\.11"\) \|\| \(set "PYTHON=python"\)',
               r'set "WEBUI_EXIT=%ERRORLEVEL%"', r'if not "%WEBUI_EXIT%"=="0" pause', r"exit /b %WEBUI_EXIT%",
               re.escape(programs[0])]
    for line in lines:
        assert any(re.fullmatch(pattern, line) for pattern in allowed), line


def test_torch_install_describes_itself():
    assert CUDA.describe() == f"torch 2.14.1 from {WHL}/cu128 (NVIDIA GPU, driver ? supports CUDA 12.8)"
    assert CPU.describe().startswith("torch 2.14.1 from PyPI (no GPU found")
    own = TorchInstall(("pip", "install", "torch==2.9.0"), "custom", "TORCH_COMMAND is set")
    assert own.describe() == "torch by `pip install torch==2.9.0` (TORCH_COMMAND is set)"
