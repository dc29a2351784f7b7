"""prepare_prompt: styles -> wildcards -> LoRA tags -> AND parts -> schedules, with the infotext texts."""
from __future__ import annotations

import time

from webui.prompts import LoraSpec, StyleDatabase, WildcardIndex, prepare_prompt

WILDCARDS = WildcardIndex({"colors": ["red", "green", "blue"], "loop": ["__loop__"], "empty": []})
STYLES = StyleDatabase.from_csv_text('name,prompt,negative_prompt\nplain,"{prompt} on a white background",noisy\n')


def test_full_pipeline():
    result = prepare_prompt(
        "a __colors__ [circle:square:5] <lora:outline:0.7> AND sky :0.5",
        "blurry",
        seed=3,
        steps=10,
        wildcards=WILDCARDS,
        styles=STYLES,
        style_names=["plain"],
        embedding_names=["noisy"],
    )
    colour = result.prompt.split(" ")[1]
    assert colour in {"red", "green", "blue"}
    assert result.template == "a __colors__ [circle:square:5] <lora:outline:0.7> AND sky :0.5 on a white background"
    assert result.prompt == result.template.replace("__colors__", colour)
    assert "<lora:" not in result.clean_prompt
    assert result.negative_prompt == "blurry, noisy" and result.negative_template is None
    assert result.loras == [LoraSpec("outline", 0.7, 0.7)]
    assert [(p.text, p.weight) for p in result.parts] == [
        (f"a {colour} [circle:square:5]", 1.0),
        (" sky :0.5 on a white background", 1.0),
    ]
    assert result.parts[0].schedule == [(5, f"a {colour} circle"), (10, f"a {colour} square")]
    assert result.negative_schedule == [(10, "blurry, noisy")]
    assert result.embeddings == ["noisy"]
    assert result.warnings == []
    assert result.is_composable


def test_seed_determinism_and_variation():
    runs = [prepare_prompt("__colors__ {a|b}", "", seed=s, steps=4, wildcards=WILDCARDS).prompt for s in range(30)]
    assert runs == [prepare_prompt("__colors__ {a|b}", "", seed=s, steps=4, wildcards=WILDCARDS).prompt for s in range(30)]
    assert len(set(runs)) > 3


def test_plain_prompt_has_no_template_and_one_part():
    result = prepare_prompt("a red circle", "", seed=1, steps=20, wildcards=WILDCARDS)
    assert result.template is None and result.prompt == "a red circle"
    assert result.schedule == [(20, "a red circle")] and not result.is_composable
    hires = result.rescheduled(10)
    assert hires.schedule == [(10, "a red circle")] and hires.prompt == result.prompt


def test_warnings_reach_the_user():
    result = prepare_prompt(
        "__nope__ __loop__ __empty__ __../x__ <hypernet:h:1> <lora:a:x>", "<lora:b:1>", seed=0, steps=5,
        wildcards=WILDCARDS, styles=STYLES, style_names=["missing"],
    )
    text = "\n".join(result.warnings)
    for needle in ["Style 'missing'", "__nope__", "cycle", "no lines", "__../x__", "hypernet", "numbers", "negative prompt"]:
        assert needle in text, needle
    assert result.loras == []


def test_hostile_inputs():
    start = time.perf_counter()
    long = "(a __colors__ [circle:square:0.5]), " * 330 + "🐱" * 100
    result = prepare_prompt(long, "[[[(((", seed=9, steps=30, wildcards=WILDCARDS)
    assert len(result.prompt) > 9000
    assert result.schedule[0][0] == 15 and "🐱" in result.schedule[-1][1]
    assert time.perf_counter() - start < 5
    odd = prepare_prompt("]]] ((( {{{ | :::: \\ AND AND", "", seed=1, steps=3, wildcards=WILDCARDS)
    assert len(odd.parts) == 3


def test_hires_pass_schedules():
    result = prepare_prompt("a [red:blue:1.5] circle", "", seed=0, steps=10, hires_steps=4)
    assert result.steps == 4 and result.schedule == [(2, "a red circle"), (4, "a blue circle")]
    base = prepare_prompt("a [red:blue:0.5] circle", "", seed=0, steps=10)
    assert base.schedule == [(5, "a red circle"), (10, "a blue circle")]
    assert base.rescheduled(10, 4).schedule == [(4, "a blue circle")]
