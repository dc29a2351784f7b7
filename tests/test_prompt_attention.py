"""A1111's emphasis syntax gives the same [text, weight] list as A1111 (its documented cases and quirks)."""
from __future__ import annotations

import pytest

from webui.prompts import parse_prompt_attention

# Expected values are A1111's outputs for the same inputs (its doctests plus checked edge cases).
CASES = [
    ("normal text", [["normal text", 1.0]]),
    ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
    ("\\(literal\\]", [["(literal]", 1.0]]),
    ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ["a ", 1.0],
            ["house", 1.5730000000000004],
            [" ", 1.1],
            ["on", 1.0],
            [" a ", 1.1],
            ["hill", 0.55],
            [", sun, ", 1.1],
            ["sky", 1.4641000000000006],
            [".", 1.1],
        ],
    ),
    ("((a)", [["a", 1.2100000000000002]]),
    ("[a:1.5]", [["a:1.5", 0.9090909090909091]]),
    ("(a: 1.5 )", [["a", 1.5]]),
    ("(a:.5)", [["a", 0.5]]),
    ("(a:b)", [["a:b", 1.1]]),
    ("(a:1e2)", [["a:1e2", 1.1]]),
    ("x :1.2)", [["x :1.2)", 1.0]]),
    ("a ) b ] c", [["a ) b ] c", 1.0]]),
    ("a\\b", [["ab", 1.0]]),
    ("\\\\(x)", [["\\", 1.0], ["x", 1.1]]),
    ("", [["", 1.0]]),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_matches_a1111(text, expected):
    assert parse_prompt_attention(text) == expected


def test_break_is_its_own_item():
    assert parse_prompt_attention("a BREAK b") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]
    assert parse_prompt_attention("a\nBREAK\nb") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]
    # Only the standalone word: "aBREAK" is text.
    assert parse_prompt_attention("aBREAK b") == [["aBREAK b", 1.0]]
    # Inside brackets BREAK is multiplied like any text (A1111 then no longer splits there).
    assert parse_prompt_attention("a BREAK b (c BREAK d) BREAK BREAK e") == [
        ["a", 1.0], ["BREAK", -1], ["b ", 1.0], ["c", 1.1], ["BREAK", -1.1], ["d", 1.1],
        ["", 1.0], ["BREAK", -1], ["", 1.0], ["BREAK", -1], ["e", 1.0],
    ]


def test_malformed_number_does_not_crash():
    # A1111 raises on "1.2.3"; we keep it as text and close the bracket normally.
    assert parse_prompt_attention("(a:1.2.3)") == [["a:1.2.3", 1.1]]


def test_hostile_input():
    long = "(masterpiece:1.2), [blurry], " * 350  # about 10,000 characters
    result = parse_prompt_attention(long)
    assert "".join(text for text, _ in result) == "masterpiece, blurry, " * 350
    assert {round(w, 4) for _, w in result} == {1.2, round(1 / 1.1, 4), 1.0}
    assert parse_prompt_attention("((((((((((") == [["", 1.0]]
    assert parse_prompt_attention("🐱 (ünïcødé:1.3) 猫") == [["🐱 ", 1.0], ["ünïcødé", 1.3], [" 猫", 1.0]]
    deep = "(" * 5000 + "x" + ")" * 5000
    assert parse_prompt_attention(deep)[0][0] == "x"
