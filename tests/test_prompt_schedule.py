"""Prompt editing and alternation schedules equal A1111's get_learned_conditioning_prompt_schedules."""
from __future__ import annotations

import pytest

from webui.prompts import get_learned_conditioning_prompt_schedules, split_composable, text_at_step

# A1111's documented cases, steps=10 (its doctest for "a [{b|d{:.5] c" is stale: A1111 itself
# leaves that prompt unchanged because '|' outside [a|b] is not in its grammar).
CASES = [
    ("test", [[10, "test"]]),
    ("a [b:3]", [[3, "a "], [10, "a b"]]),
    ("a [b: 3]", [[3, "a "], [10, "a b"]]),
    ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
    ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
    ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
    ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
    ("a [unbalanced", [[10, "a [unbalanced"]]),
    ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
    ("a [{b|d{:.5] c", [[10, "a [{b|d{:.5] c"]]),
    ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
    ("[a|(b:1.1)]", [[i, "a" if i % 2 else "(b:1.1)"] for i in range(1, 11)]),
    ("[fe|]male", [[i, "female" if i % 2 else "male"] for i in range(1, 11)]),
    ("[fe|||]male", [[i, "female" if i % 4 == 1 else "male"] for i in range(1, 11)]),
    ("a [b:3] | c", [[10, "a [b:3] | c"]]),  # '|' outside brackets: A1111 uses the text as is
    ("[a:b:0]", [[10, "b"]]),
    ("[a:b:99]", [[10, "a"]]),
]


@pytest.mark.parametrize("prompt, expected", CASES)
def test_matches_a1111(prompt, expected):
    assert get_learned_conditioning_prompt_schedules([prompt], 10)[0] == expected


def test_a1111_example_in_its_header_comment():
    prompt = ("fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
              "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]")
    assert get_learned_conditioning_prompt_schedules([prompt], 100)[0] == [
        [25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
        [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
        [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
        [75, "fantasy landscape with a lake and an oak in background masterful"],
        [100, "fantasy landscape with a lake and a christmas tree in background masterful"],
    ]


def test_hires_pass_rules():
    g = lambda p: get_learned_conditioning_prompt_schedules([p], 10, 10)[0]  # noqa: E731
    assert g("a [b:.5] c") == [[10, "a b c"]]
    assert g("a [b:1.5] c") == [[5, "a  c"], [10, "a b c"]]
    old = get_learned_conditioning_prompt_schedules(["a [b:.5] c"], 10, 10, use_old_scheduling=True)[0]
    assert old == [[5, "a  c"], [10, "a b c"]]


def test_batch_and_step_lookup():
    schedules = get_learned_conditioning_prompt_schedules(["[red:blue:2] circle", "square"], 4)
    assert schedules == [[[2, "red circle"], [4, "blue circle"]], [[4, "square"]]]
    # A1111's denoiser counts steps from 0 and takes the first entry with step <= end.
    assert [text_at_step(schedules[0], s) for s in range(4)] == ["red circle"] * 3 + ["blue circle"]


def test_hostile_input_stays_fast_and_total():
    long = "a [red:blue:5] circle, " * 440  # about 10,000 characters
    schedule = get_learned_conditioning_prompt_schedules([long], 20)[0]
    assert [end for end, _ in schedule] == [5, 20]
    assert schedule[1][1] == "a blue circle, " * 440
    deep = "[" * 3000 + "a:2" + "]" * 3000
    assert get_learned_conditioning_prompt_schedules([deep], 10)[0] == [[10, deep]]
    for text in ["[[[", "]]]", ":::", "\\", "[a|", "🐱 [猫:犬:3]"]:
        result = get_learned_conditioning_prompt_schedules([text], 10)[0]
        assert result[-1][0] == 10
    assert get_learned_conditioning_prompt_schedules(["🐱 [猫:犬:3]"], 10)[0] == [[3, "🐱 猫"], [10, "🐱 犬"]]


def test_composable_split_like_a1111():
    assert split_composable("a red circle AND a blue square :1.2") == [("a red circle", 1.0), (" a blue square", 1.2)]
    assert split_composable("one:0.5") == [("one", 0.5)]
    assert split_composable("ANDROID AND x") == [("ANDROID", 1.0), (" x", 1.0)]
    assert split_composable("(x:1.2)") == [("(x:1.2)", 1.0)]
    assert split_composable("") == [("", 1.0)]


def test_docstring_examples_hold():
    import doctest

    import webui.prompts.attention
    import webui.prompts.composable
    import webui.prompts.extra_networks
    import webui.prompts.schedule
    import webui.prompts.styles

    modules = [webui.prompts.attention, webui.prompts.composable, webui.prompts.extra_networks,
               webui.prompts.schedule, webui.prompts.styles]
    for module in modules:
        failed, attempted = doctest.testmod(module)
        assert attempted > 0 and failed == 0, module.__name__
