"""The script runner around an engine: axis order and indices, ranges, progress over all images, interrupt.

The engine here is the fake at the edge (tests/fake_engine.py); the real engine runs in test_scripts_api.py.
"""
import pytest
from PIL import Image

from fake_engine import FakeEngine
from webui.schemas import GenerationRequest, InvalidRequest, JobInterrupted
from webui.scripts import ScriptRunner, resolve_script
from webui.scripts.axis_values import parse_numbers, split_values
from webui.scripts.base import ScriptEnv
from webui.scripts.xyz_axes import axes_for


def test_axis_indices_are_a1111_110s_for_each_tab():
    txt2img = [axis.label for axis in axes_for("txt2img")]
    img2img = [axis.label for axis in axes_for("img2img")]
    assert txt2img[:12] == ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "Hires steps", "CFG Scale",
                            "Prompt S/R", "Prompt order", "Sampler", "Hires sampler", "Checkpoint name"]
    assert img2img[4:11] == ["Steps", "CFG Scale", "Image CFG Scale", "Prompt S/R", "Prompt order", "Sampler",
                             "Checkpoint name"]
    assert txt2img[-1] == img2img[-1] == "Size" and (len(txt2img), len(img2img)) == (42, 41)
    assert "Hires upscaler" in txt2img and "Hires upscaler" not in img2img


@pytest.mark.parametrize("text, kind, expected", [
    ("1-5", int, [1, 2, 3, 4, 5]),
    ("1-10 (+2)", int, [1, 3, 5, 7, 9]),
    ("10-1 (-3)", int, [10, 7, 4]),  # A1111 counts down to end + 1, so 1 is left out
    ("1-10 [5]", int, [1, 3, 5, 7, 10]),
    ("0-1 [3]", float, [0.0, 0.5, 1.0]),
    ("1.5-2.5 (+0.5)", float, [1.5, 2.0, 2.5]),
    ("-1, 5, 7-8", int, [-1, 5, 7, 8]),
])
def test_ranges_expand_as_in_a1111(text, kind, expected):
    assert parse_numbers(split_values(text), kind) == expected


def test_quoted_values_keep_their_commas():
    assert split_values('"a, b", c') == ["a, b", "c"]


class _Recorder:
    """A JobControl that keeps every progress report and can interrupt after some reports."""

    def __init__(self, stop_after=None):
        self.reports, self.stop_after = [], stop_after

    def report(self, progress):
        self.reports.append((progress.image_index, progress.image_count))

    def interrupted(self):
        return self.stop_after is not None and len(self.reports) >= self.stop_after

    def take_skip(self):
        return False

    def wants_preview(self, step):
        return False


def _xyz(request, args):
    key, values = resolve_script("X/Y/Z plot", args, request.mode, request, ScriptEnv())
    request.script_name, request.script_args = key, values
    return request


def test_one_job_counts_every_image_and_interrupt_returns_what_was_made():
    engine = FakeEngine(step_seconds=0)
    runner = ScriptRunner(engine)
    request = _xyz(GenerationRequest(prompt="p", steps=2, seed=3, save_images=False),
                   [1, "1,2,3", [], 6, "5,7", []])  # Seed x CFG Scale
    control = _Recorder()
    result = runner.run("txt2img", request, control)
    assert len(engine.calls) == 6 and len(result.images) == 1  # one engine run per cell, the grid back
    assert {count for _, count in control.reports} == {6}
    assert sorted({index for index, _ in control.reports}) == [0, 1, 2, 3, 4, 5]

    stopping = _Recorder(stop_after=5)  # two steps per image: stops during the third cell
    with pytest.raises(JobInterrupted) as stop:
        runner.run("txt2img", request, stopping)
    assert len(engine.calls) == 6 + 3
    [grid] = stop.value.partial.images  # as A1111: the grid of what was made, blank cells for the rest
    cell = engine.size
    assert grid.width > 3 * cell and grid.height > 2 * cell


def test_checkpoint_axis_runs_outermost_so_models_switch_least():
    class Catalog:
        def find_checkpoint(self, name):
            return type("Info", (), {"title": f"{name}.safetensors"})()

    class Recording(FakeEngine):
        def run(self, kind, request, control=None):
            self.calls.append(request.checkpoint)
            return self._generate(request, control)

    engine = Recording(step_seconds=0)
    request = GenerationRequest(prompt="p", steps=1, seed=1, save_images=False)
    key, values = resolve_script("X/Y/Z plot", [1, "1,2,3", [], 11, "a,b", []], "txt2img", request,
                                 ScriptEnv(catalog=Catalog()))
    request.script_name, request.script_args = key, values
    ScriptRunner(engine).run("txt2img", request, _Recorder())
    assert engine.calls == ["a.safetensors"] * 3 + ["b.safetensors"] * 3


def test_named_fields_form_and_refusals():
    request = GenerationRequest(prompt="a red circle")
    _, values = resolve_script("x/y/z plot", {"x_type": "CFG Scale", "x_values": "3-5"}, "txt2img", request,
                               ScriptEnv())
    assert values["x_type"] == "CFG Scale" and values["draw_legend"] is True
    img2img = GenerationRequest(prompt="a red circle", init_image=Image.new("RGB", (8, 8)))
    for args in ([6, "1"], [50, "1"], ["Token merging ratio", "0.5"], ["Steps", ""]):  # 6: Image CFG Scale
        with pytest.raises(InvalidRequest) as error:
            resolve_script("X/Y/Z plot", args, "img2img", img2img, ScriptEnv())
        assert error.value.field == "script_args"


def test_z_axis_sub_grids_without_legend():
    engine = FakeEngine(step_seconds=0, size=8)
    runner = ScriptRunner(engine)
    # X: Seed 1,2 ; Y: Steps 1-3 ; Z: CFG Scale 5,7 ; no legend, include sub-grids, 4 px margins
    args = [1, "1,2", [], 4, "1-3", [], 6, "5,7", [], False, False, True, False, False, False, False, 4, False]
    result = runner.run("txt2img", _xyz(GenerationRequest(prompt="p", seed=1, save_images=False), args),
                        _Recorder())
    main, *subs = result.images
    assert len(engine.calls) == 12 and len(subs) == 2
    assert all(sub.size == (2 * 8, 3 * 8) for sub in subs)  # 2x3 cells; as in A1111 margins come with legends
    assert main.size == (2 * subs[0].width, subs[0].height)
    assert len(result.infotexts) == 3 and "Z Type: CFG Scale" in result.infotexts[0]


def test_prompt_order_and_size_axes_change_the_request():
    from webui.scripts.xyz_axes import apply_axis, axes_for

    axes = {axis.label: axis for axis in axes_for("txt2img")}
    request = GenerationRequest(prompt="a red circle on white")
    orders = axes["Prompt order"].expand(["red", "white"])
    apply_axis(request, axes["Prompt order"], orders[1], orders)
    assert request.prompt == "a white circle on red"
    apply_axis(request, axes["Size"], "96x32", ["96x32"])
    assert (request.width, request.height) == (96, 32)
    apply_axis(request, axes["Schedule rho"], 5.0, [5.0])
    assert request.sampler_overrides == {"rho": 5.0}


def test_script_module_examples_hold():
    import doctest

    from webui.scripts import axis_values, img2img_scripts, prompt_scripts

    for module in (axis_values, img2img_scripts, prompt_scripts):
        failed, attempted = doctest.testmod(module)
        assert attempted > 0 and failed == 0, module.__name__
