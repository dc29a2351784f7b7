"""torch.compile of the UNet in the background: the first job of a size runs plain, the next ones compiled, with
the same image; failures and offloading leave the UNet plain and say so.

The graphs here are built by dynamo with its ``eager`` backend (fast and exact on a 2-core CPU); inductor's own
speed is measured by bench/bench_compile.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from webui.catalog import Catalog
from webui.engine.engine import Engine
from webui.models.compiled import signature, zeros_like_strided
from webui.models.manager import ModelManager
from webui.options import Options
from webui.schemas import GenerationRequest
from tests.test_engine_addons_and_queue import write_kohya_lora


def make_engine(settings, backend="eager"):
    settings = settings.with_changes(compile_backend=backend)
    catalog = Catalog(settings)
    catalog.refresh()
    return Engine(settings, catalog, ModelManager(settings, catalog), options=Options())


def run(engine, compile_on=True, prompt="a red circle", side=64, **overrides):
    request = GenerationRequest(prompt=prompt, steps=3, width=side, height=side, seed=9, sampler_name="Euler",
                                save_images=False, override_settings={"torch_compile": compile_on, **overrides})
    return engine.generate(request)


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0])


def test_the_first_job_runs_plain_while_compiling_and_the_next_runs_compiled_with_the_same_image(settings):
    engine = make_engine(settings)
    plain = run(engine, compile_on=False)
    assert plain.notes == []
    first = run(engine)
    assert any("compiling the UNet in the background" in note for note in first.notes)
    assert np.array_equal(pixels(first), pixels(plain))
    assert engine.models._compiled.wait(600)
    second = run(engine)
    assert second.notes == ["torch.compile: 3 of 3 UNet calls ran compiled"]
    assert np.array_equal(pixels(second), pixels(plain))
    bigger = run(engine, side=96)  # a new size: plain again while its graph is built
    assert any("compiling" in note for note in bigger.notes)
    off = run(engine, compile_on=False)
    assert off.notes == [] and "forward" not in engine.models.loaded.unet.__dict__
    assert np.array_equal(pixels(off), pixels(plain))


def test_a_lora_on_a_compiled_unet_gives_the_plain_unets_image(settings):
    engine = make_engine(settings)
    run(engine)
    write_kohya_lora(settings.model_folder("Lora") / "tiny.safetensors", engine.models.loaded.unet)
    engine.catalog.refresh_loras()
    engine.models._compiled.wait(600)
    compiled = run(engine, prompt="a red circle <lora:tiny:1>")
    plain = run(engine, compile_on=False, prompt="a red circle <lora:tiny:1>")
    assert np.array_equal(pixels(compiled), pixels(plain))
    assert not np.array_equal(pixels(plain), pixels(run(engine, compile_on=False)))


def test_a_backend_that_fails_leaves_the_unet_plain_and_says_why(settings):
    from torch._dynamo import register_backend

    @register_backend(name="always_fails_for_test")
    def always_fails(graph_module, example_inputs):
        raise RuntimeError("this backend cannot compile anything")

    engine = make_engine(settings, backend="always_fails_for_test")
    plain = run(engine, compile_on=False)
    first = run(engine)
    engine.models._compiled.wait(600)
    after = run(engine)  # the failure is told once: by the job it happened during, or else by the next one
    assert np.array_equal(pixels(after), pixels(plain))
    failures = [note for note in first.notes + after.notes if note.startswith("torch.compile failed")]
    assert len(failures) == 1 and "this backend cannot compile anything" in failures[0]
    assert not any("ran compiled" in note for note in after.notes)
    later = run(engine)
    assert later.notes == [] and np.array_equal(pixels(later), pixels(plain))  # not tried again for that size
    unknown = make_engine(settings, backend="no-such-backend")
    result = run(unknown)
    assert any("torch.compile is not used" in note and "no-such-backend" in note for note in result.notes)


def test_compile_is_off_while_the_weights_are_offloaded(settings):
    engine = make_engine(settings)
    result = run(engine, memory_offload="Model offload")
    assert result.notes == ["torch.compile is not used while the weights are offloaded (model)"]
    assert engine.models._compiled is None


def test_warm_up_inputs_keep_the_strides_graphs_are_guarded_on():
    timestep = torch.tensor([3.0]).expand(4)
    zeros = zeros_like_strided(timestep)
    assert zeros.stride() == (0,) and zeros.shape == (4,) and float(zeros.abs().sum()) == 0
    image = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    assert zeros_like_strided(image).stride() == image.stride()
    assert signature((timestep,), {}) != signature((timestep.contiguous(),), {})
