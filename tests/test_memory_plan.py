"""The memory planner: which offload mode and VAE tiling a job gets from the free memory and the model sizes,
and the real engine running in every mode with the same image as with all weights on the device."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from webui.catalog import Catalog
from webui.engine.engine import Engine
from webui.models.manager import ModelManager
from webui.models.memory_plan import JobFootprint, MemoryBudget, ModelBytes, plan_memory
from webui.models.placement import execution_device
from webui.options import Options
from webui.schemas import GenerationRequest, InvalidRequest
from tests.test_engine_addons_and_queue import write_kohya_lora

GIB = 2 ** 30
# Published checkpoints' module sizes in fp16 (the UNets' from diffusers' classes with their configs).
SD15 = ModelBytes(unet=1_719_000_000, text_encoders=(246_000_000,), vae=167_000_000,
                  largest_unet_block=517_000_000, largest_unet_layer=59_000_000, unet_outside_blocks=198_000_000)
SDXL = ModelBytes(unet=5_135_000_000, text_encoders=(246_000_000, 1_389_000_000), vae=167_000_000,
                  largest_unet_block=2_413_000_000, largest_unet_layer=59_000_000,
                  unet_outside_blocks=841_000_000)


def footprint(side=512, batch=1, element_size=2, **fields) -> JobFootprint:
    return JobFootprint(width=side, height=side, batch_size=batch, unet_channels=320, vae_channels=128,
                        element_size=element_size, vae_element_size=element_size, **fields)


def gpu(gib: float, dtype="fp16") -> MemoryBudget:
    return MemoryBudget("cuda", int(gib * GIB), 32 * GIB, dtype)


# ------------------------------------------------------------------ the pure planner
def test_a_model_that_fits_stays_on_the_device_and_says_so():
    plan = plan_memory(gpu(24), SD15, footprint())
    assert plan.offload == "none" and not plan.vae_tiled and not plan.reasons
    assert plan.needed_bytes < 24 * GIB
    assert plan.describe().startswith("memory: all weights stay on the device")


@pytest.mark.parametrize("free_gib, expected", [(2.5, "model"), (2.0, "group"), (1.0, "sequential")])
def test_less_free_memory_moves_more_of_the_model_out_with_the_reason(free_gib, expected):
    plan = plan_memory(gpu(free_gib), SD15, footprint(side=256))
    assert plan.offload == expected
    assert plan.needed_bytes <= free_gib * GIB
    assert "keeping every weight on the device would need about" in plan.describe()


def test_a_larger_budget_never_gets_a_more_aggressive_plan():
    order = ["none", "model", "group", "sequential"]
    chosen = [plan_memory(gpu(gib / 4), SDXL, footprint(side=1024)).offload for gib in range(2, 120)]
    ranks = [order.index(mode) for mode in chosen]
    assert ranks == sorted(ranks, reverse=True)
    assert chosen[0] == "sequential" and chosen[-1] == "none"


def test_a_big_image_tiles_the_vae_before_moving_any_weight():
    plan = plan_memory(gpu(8), SD15, footprint(side=2048))
    assert plan.offload == "none" and plan.vae_tiled
    assert "an untiled VAE pass would need about" in plan.describe()
    no_tiles = plan_memory(gpu(8), SD15, footprint(side=2048, vae_tiling=False))  # vae_tiling_min_pixels 0
    assert not no_tiles.vae_tiled and no_tiles.offload != "none"


def test_an_image_above_the_tiling_threshold_is_estimated_with_tiles():
    by_size = plan_memory(gpu(24), SD15, footprint(side=2048, vae_tiles_by_size=True))
    assert by_size.vae_tiled and by_size.offload == "none"
    assert by_size.needed_bytes < plan_memory(gpu(24), SD15, footprint(side=2048)).needed_bytes
    on_cpu = plan_memory(MemoryBudget("cpu", 20 * GIB, 20 * GIB), SD15, footprint(side=2048, vae_tiles_by_size=True))
    assert on_cpu.vae_tiled and "the VAE works in tiles" in on_cpu.describe()


def test_batch_and_controlnets_raise_the_estimate():
    alone = plan_memory(gpu(24), SD15, footprint(side=1024))
    assert plan_memory(gpu(24), SD15, footprint(side=1024, batch=4)).needed_bytes > alone.needed_bytes
    with_cn = ModelBytes(**{**SD15.__dict__, "extras": 700_000_000})
    assert plan_memory(gpu(24), with_cn, footprint(side=1024, controlnets=1)).needed_bytes > alone.needed_bytes


def test_nothing_fits_says_the_job_may_run_out_and_what_would_help():
    plan = plan_memory(gpu(0.5, dtype="fp32"), SDXL, footprint(side=1024, element_size=4))
    assert plan.offload == "sequential"
    assert "may run out of memory" in plan.describe() and "--precision fp16" in plan.describe()


def test_a_mode_chosen_in_settings_is_kept_and_warned_about_when_it_cannot_fit():
    roomy = plan_memory(gpu(80), SD15, footprint(), forced="group")
    assert roomy.offload == "group" and roomy.forced and "chosen in Settings" in roomy.describe()
    tight = plan_memory(gpu(2), SDXL, footprint(side=1024), forced="none")
    assert tight.offload == "none" and "it may not fit" in tight.describe()
    with pytest.raises(ValueError):
        plan_memory(gpu(8), SD15, footprint(), forced="disk")


def test_apple_gpus_share_the_ram_so_nothing_is_offloaded_there():
    plan = plan_memory(MemoryBudget("mps", 2 * GIB, 2 * GIB), SDXL, footprint(side=1024))
    assert plan.offload == "none" and plan.describe().startswith("memory: all weights in unified memory (MPS)")
    assert "the system may swap" in plan.describe()


def test_on_the_cpu_nothing_is_offloaded_and_short_ram_tiles_the_vae():
    ram = MemoryBudget("cpu", 3 * GIB, 3 * GIB, "fp32")
    small = plan_memory(ram, SD15, footprint(side=512, element_size=4))
    assert small.offload == "none" and small.describe().startswith("memory: all weights in RAM (CPU)")
    big = plan_memory(ram, SD15, footprint(side=2048, element_size=4))
    assert big.offload == "none" and big.vae_tiled
    starved = plan_memory(MemoryBudget("cpu", GIB, GIB, "fp32"), SD15, footprint(side=512, element_size=4))
    assert "the system may swap" in starved.describe()


# ------------------------------------------------------------------ the real engine in each mode
@pytest.fixture
def engine(settings):
    catalog = Catalog(settings)
    catalog.refresh()
    return Engine(settings, catalog, ModelManager(settings, catalog), options=Options())


def run(engine, prompt="a red circle", mode="Automatic", **fields):
    request = GenerationRequest(prompt=prompt, steps=3, width=64, height=64, seed=5, sampler_name="Euler",
                                save_images=False, override_settings={"memory_offload": mode}, **fields)
    return engine.generate(request)


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0])


def group_hooks(module) -> int:
    """How many of a module's layers carry diffusers' group offloading hook."""
    return sum("group_offloading" in layer._diffusers_hook.hooks for layer in module.modules()
               if getattr(layer, "_diffusers_hook", None) is not None)


def test_every_offload_mode_gives_the_image_of_weights_kept_on_the_device(engine):
    base = run(engine, mode="Keep on device")
    assert base.memory_plan.startswith("memory: all weights in RAM (CPU)")
    for mode, name in (("Model offload", "model"), ("Group offload", "group"), ("Sequential offload", "sequential")):
        result = run(engine, mode=mode)
        assert engine.models.offload_mode == name
        assert name + " offload" in result.memory_plan and "chosen in Settings" in result.memory_plan
        assert np.array_equal(pixels(result), pixels(base)), mode
        assert engine.models._placement.shelf_moves >= 2  # the text encoder and the VAE went to the device in turn
    unet = engine.models.loaded.unet
    assert hasattr(unet, "_webui_execution_device") and group_hooks(unet) > 0
    again = run(engine, mode="Automatic")  # the planner: on the CPU, back to plain modules
    assert engine.models.offload_mode == "none" and np.array_equal(pixels(again), pixels(base))
    assert not hasattr(unet, "_webui_execution_device") and group_hooks(unet) == 0


def test_a_lora_under_offload_changes_the_image_as_on_the_device_and_comes_off_exactly(engine, settings):
    base = run(engine, mode="Keep on device")
    write_kohya_lora(settings.model_folder("Lora") / "tiny.safetensors", engine.models.loaded.unet)
    engine.catalog.refresh_loras()
    resident = run(engine, "a red circle <lora:tiny:1>", mode="Keep on device")
    assert not np.array_equal(pixels(resident), pixels(base))
    for mode in ("Model offload", "Group offload"):
        offloaded = run(engine, "a red circle <lora:tiny:1>", mode=mode)
        assert np.array_equal(pixels(offloaded), pixels(resident)), mode
        assert np.array_equal(pixels(run(engine, mode=mode)), pixels(base)), mode


def write_other_vae(engine, settings, name: str = "other.safetensors") -> str:
    """A VAE file with other random weights than the loaded checkpoint's, in models/VAE; its name."""
    from diffusers import AutoencoderKL

    from webui.models.ldm_export import vae_to_ldm

    torch.manual_seed(123)
    other = AutoencoderKL.from_config(engine.models.loaded.vae.config)
    save_file({k: v.contiguous() for k, v in vae_to_ldm(other.state_dict(), dict(other.config)).items()},
              str(settings.model_folder("VAE") / name))
    engine.catalog.refresh_vaes()
    return name


def test_a_vae_chosen_per_job_is_offloaded_like_the_one_it_replaces(engine, settings):
    run(engine)
    write_other_vae(engine, settings)
    resident = run(engine, mode="Keep on device", vae="other.safetensors")
    offloaded = run(engine, mode="Model offload", vae="other.safetensors")
    assert np.array_equal(pixels(offloaded), pixels(resident))
    assert not np.array_equal(pixels(offloaded), pixels(run(engine, mode="Model offload")))
    swapped = engine.models.loaded.vae
    assert hasattr(swapped, "_webui_execution_device")
    assert execution_device(swapped) == torch.device("cpu")


@pytest.mark.parametrize("switch", ["refiner", "hires checkpoint"])
def test_a_checkpoint_switched_in_mid_job_offloads_the_vae_chosen_for_the_job(engine, settings, tiny_checkpoint_dir,
                                                                              monkeypatch, switch):
    """The job's VAE replaces the second checkpoint's own too; under offload it must move like the one it
    replaced (left untagged in RAM, it would decode on the CPU while the UNet runs on the GPU)."""
    import shutil

    from webui.engine import vae_ops

    shutil.copy(tiny_checkpoint_dir / "tiny-sd1-b.safetensors", settings.model_folder("Stable-diffusion"))
    engine.catalog.refresh()
    first = engine.catalog.find_checkpoint("tiny-sd1").title
    run(engine, checkpoint=first)
    vae = write_other_vae(engine, settings)
    second = engine.catalog.find_checkpoint("tiny-sd1-b").title
    fields = {"refiner_checkpoint": second, "refiner_switch_at": 0.5} if switch == "refiner" else \
        {"enable_hr": True, "hr_scale": 1.5, "hr_checkpoint": second, "denoising_strength": 0.5}
    fields["checkpoint"] = first
    decoded_by = []
    real_decode = vae_ops.decode

    def watched_decode(module, *args, **kwargs):
        decoded_by.append(hasattr(module, "_webui_execution_device"))
        return real_decode(module, *args, **kwargs)

    resident = run(engine, mode="Keep on device", vae=vae, **fields)
    monkeypatch.setattr(vae_ops, "decode", watched_decode)
    offloaded = run(engine, mode="Model offload", vae=vae, **fields)
    assert decoded_by and all(decoded_by), decoded_by  # every decode ran on a VAE the offload hooks move
    assert np.array_equal(pixels(offloaded), pixels(resident))


def test_the_api_reports_the_plan_and_refuses_a_bad_setting(settings, serve_app):
    client = serve_app(settings)[0]
    body = {"prompt": "a red circle", "seed": 1, "steps": 2, "width": 64, "height": 64,
            "override_settings": {"memory_offload": "Model offload"}}
    answer = client.post("/sdapi/v1/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    info = json.loads(answer.json()["info"])
    assert info["memory_plan"].startswith("memory: model offload") and "chosen in Settings" in info["memory_plan"]
    refused = client.post("/sdapi/v1/options", json={"memory_offload": "Turbo"})
    assert refused.status_code == 422 and "memory_offload" in refused.text
    with pytest.raises(InvalidRequest, match="memory_offload"):
        Options().update({"memory_offload": "Turbo"})
