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
    bf16_on_cpu = expected[0] == "cpu" and expected[1] == "bf16"  # which runs channels_last
    assert choose_device(device, precision, caps) == DeviceChoice(*expected, channels_last=bf16_on_cpu)


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


def test_no_half_vae_keeps_the_vae_in_fp32_on_any_device():
    assert choose_device("auto", "auto", AMPERE, no_half_vae=True) == DeviceChoice("cuda", "fp16", "fp32")
    assert choose_device("cpu", "bf16", CPU_ONLY, no_half_vae=True) == DeviceChoice("cpu", "bf16", "fp32",
                                                                                        channels_last=True)


def test_a1111_precision_flags_reach_the_settings():
    settings = app.settings_from_args(app.parse_args(["--no-half", "--no-half-vae"]))
    assert settings.precision == "fp32" and settings.no_half_vae
    assert app.settings_from_args(app.parse_args([])).no_half_vae is False


def test_a_half_precision_model_with_its_vae_in_fp32_generates(settings):
    # The split MPS runs by default (fp16 UNet, fp32 VAE), here with bf16 on the CPU.
    import numpy as np
    import torch
    from PIL import Image

    from webui.catalog import Catalog
    from webui.engine.engine import Engine
    from webui.models.manager import ModelManager
    from webui.schemas import GenerationRequest

    settings = settings.with_changes(precision="bf16", no_half_vae=True)
    catalog = Catalog(settings)
    catalog.refresh()
    engine = Engine(settings, catalog, ModelManager(settings, catalog))
    request = dict(prompt="a red circle", steps=2, width=64, height=64, seed=1, sampler_name="Euler", save_images=False)
    result = engine.generate(GenerationRequest(**request))
    model = engine.models.loaded
    assert next(model.unet.parameters()).dtype == torch.bfloat16
    assert next(model.vae.parameters()).dtype == torch.float32
    image = np.asarray(result.images[0])
    assert image.shape == (64, 64, 3) and image.std() > 0 and not result.warnings
    init = Image.fromarray(image)
    again = engine.generate(GenerationRequest(**request, init_image=init, denoising_strength=0.5))
    assert again.images[0].size == (64, 64) and not again.warnings


# ------------------------------------------------------------------ --precision auto on the CPU: measured
NATIVE_BF16_CPU = Capabilities("2.14.1", cpu_precision="bf16", cpu_precision_reason="bf16 took 0.62x fp32's time")


def test_auto_on_the_cpu_takes_the_measured_precision_with_channels_last():
    choice = choose_device("auto", "auto", NATIVE_BF16_CPU)
    assert (choice.device, choice.dtype, choice.vae_dtype, choice.channels_last) == ("cpu", "bf16", "bf16", True)
    assert "0.62x" in choice.describe()
    assert choose_device("auto", "fp32", NATIVE_BF16_CPU) == DeviceChoice("cpu", "fp32", "fp32")  # forced stays
    assert choose_device("cpu", "bf16", CPU_ONLY).channels_last  # asked-for bf16 gets the fast layout too
    assert not choose_device("auto", "auto", AMPERE).channels_last
