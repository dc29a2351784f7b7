"""Device and precision choice for every machine kind, and the start-up refusal of impossible ones."""
from __future__ import annotations

import pytest

import app
from webui.devices import Capabilities, DeviceChoice, UnsupportedDevice, choose_device, probe_capabilities

CPU_ONLY = Capabilities("2.14.1")
CPU_TORCH_ON_GPU_BOX = Capabilities("2.14.1+cpu")
CUDA_NO_GPU = Capabilities("2.14.1+cu128", cuda_built=True)
AMPERE = Capabilities("2.14.1+cu128", cuda=True, cuda_built=True, cuda_bf16=True, cuda_name="RTX 3060")
TURING = Capabilities("2.14.1+cu128", cuda=True, cuda_built=True, cuda_bf16=False, cuda_name="GTX 1660")
ROCM = Capabilities("2.14.1+rocm6.4", cuda=True, cuda_built=True, cuda_bf16=True, cuda_name="RX 7900")
MAC_14 = Capabilities("2.14.1", mps=True, mps_bf16=True)
MAC_13 = Capabilities("2.14.1", mps=True, mps_bf16=False)

ALLOWED = [
    # (device, precision, machine) -> (device, dtype, vae dtype)
    ("auto", "auto", CPU_ONLY, ("cpu", "fp32", "fp32")),
    ("auto", "bf16", CPU_ONLY, ("cpu", "bf16", "bf16")),
    ("cpu", "fp32", AMPERE, ("cpu", "fp32", "fp32")),
    ("auto", "auto", AMPERE, ("cuda", "fp16", "fp16")),
    ("cuda", "bf16", AMPERE, ("cuda", "bf16", "bf16")),
    ("cuda", "fp32", TURING, ("cuda", "fp32", "fp32")),
    ("auto", "auto", TURING, ("cuda", "fp16", "fp16")),
    ("auto", "auto", ROCM, ("cuda", "fp16", "fp16")),  # ROCm torch calls its device "cuda"
    ("auto", "auto", MAC_13, ("mps", "fp16", "fp32")),  # the VAE stays fp32 on MPS
    ("mps", "fp16", MAC_13, ("mps", "fp16", "fp32")),
    ("mps", "fp32", MAC_13, ("mps", "fp32", "fp32")),
    ("mps", "bf16", MAC_14, ("mps", "bf16", "bf16")),
    ("cpu", "auto", MAC_14, ("cpu", "fp32", "fp32")),
]


@pytest.mark.parametrize("device, precision, caps, expected", ALLOWED)
def test_device_and_dtypes_for_each_machine(device, precision, caps, expected):
    assert choose_device(device, precision, caps) == DeviceChoice(*expected)


REFUSED = [
    ("cuda", "auto", CPU_TORCH_ON_GPU_BOX, "--reinstall-torch"),
    ("cuda", "auto", CUDA_NO_GPU, "finds no usable GPU"),
    ("cuda", "auto", MAC_14, "without GPU support"),
    ("mps", "auto", AMPERE, "Apple silicon"),
    ("mps", "auto", CPU_ONLY, "no MPS"),
    ("cpu", "fp16", CPU_ONLY, "use fp32"),
    ("auto", "fp16", CPU_ONLY, "fp16 on the CPU"),
    ("cuda", "bf16", TURING, "GTX 1660 has no bfloat16"),
    ("auto", "bf16", MAC_13, "bf16 on MPS.*macOS 14"),
    ("xpu", "auto", AMPERE, "choose auto, cuda, mps or cpu"),
    ("cpu", "fp8", CPU_ONLY, "choose auto, fp16, bf16 or fp32"),
]


@pytest.mark.parametrize("device, precision, caps, words", REFUSED)
def test_impossible_combinations_are_refused_with_what_to_do(device, precision, caps, words):
    with pytest.raises(UnsupportedDevice, match=words):
        choose_device(device, precision, caps)


def test_the_probe_describes_this_cpu_machine():
    caps = probe_capabilities()
    assert caps.torch_version.startswith("2.14.1")
    assert not caps.cuda and not caps.mps  # the test machines have no GPU
    assert choose_device("auto", "auto", caps).describe() == "cpu in fp32"


@pytest.mark.parametrize("flags, words", [(["--device", "cuda"], "--device cuda"),
                                          (["--device", "cpu", "--precision", "fp16"], "fp16 on the CPU")])
def test_app_refuses_to_start_on_an_impossible_device_with_a_message(flags, words, capsys, tmp_path):
    code = app.main([*flags, "--outdir", str(tmp_path), "--port", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # stopped before anything was set up


def test_mps_choice_describes_its_vae_upcast():
    assert choose_device("mps", "fp16", MAC_13).describe() == "mps in fp16, VAE in fp32"
