"""Wildcards and variants in sd-dynamic-prompts syntax: deterministic, safe, never hanging."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from webui.prompts import WildcardIndex

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "colors.txt").write_text("# comment\nred\n\n  green  \nblue\n", encoding="utf-8")
    (tmp_path / "colors_dark.txt").write_text("black\n", encoding="utf-8")
    (tmp_path / "animals").mkdir()
    (tmp_path / "animals" / "cats.txt").write_text("tabby __colors__ cat\n", encoding="utf-8")
    (tmp_path / "loop.txt").write_text("again __loop__\n", encoding="utf-8")
    (tmp_path / "ping.txt").write_text("__pong__\n", encoding="utf-8")
    (tmp_path / "pong.txt").write_text("__ping__\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "only_comments.txt").write_text("# nothing\n\n", encoding="utf-8")
    (tmp_path / "emoji.txt").write_text("🐱 猫\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a wildcard\n", encoding="utf-8")
    return tmp_path


def test_scan_names_use_relative_paths(folder):
    index = WildcardIndex.scan(folder)
    assert index.names() == [
        "animals/cats", "colors", "colors_dark", "emoji", "empty", "loop", "only_comments", "ping", "pong",
    ]
    assert index.values("colors") == ["red", "green", "blue"]
    assert WildcardIndex.scan(folder / "missing").names() == []


def test_same_seed_same_text_and_seeds_vary(folder):
    index = WildcardIndex.scan(folder)
    text = "a __colors__ {circle|square|triangle}, __animals/cats__"
    first = index.expand(text, 7)
    assert first == index.expand(text, 7)
    assert first[1] == []
    results = {index.expand(text, seed)[0] for seed in range(40)}
    assert len(results) > 5
    for result in results:
        assert "__" not in result and "{" not in result
        assert result.split(" ")[1] in {"red", "green", "blue"}


def test_variant_forms():
    index = WildcardIndex({"colors": ["red", "green", "blue"]})
    picks = [index.expand("{0::never|1::always}", s)[0] for s in range(30)]
    assert set(picks) == {"always"}
    two = index.expand("{2$$a|b|c}", 3)[0].split(", ")
    assert len(two) == 2 and len(set(two)) == 2 and set(two) <= {"a", "b", "c"}
    joined = index.expand("{2$$ and $$a|b|c}", 3)[0].split(" and ")
    assert len(joined) == 2 and set(joined) <= {"a", "b", "c"}
    counts = {len(index.expand("{1-3$$a|b|c|d}", s)[0].split(", ")) for s in range(60)}
    assert counts == {1, 2, 3}
    assert {len(index.expand("{2-$$a|b|c}", s)[0].split(", ")) for s in range(60)} == {2, 3}
    assert {len(index.expand("{-2$$a|b|c}", s)[0].split(", ")) for s in range(60)} == {1, 2}
    assert len(index.expand("{9$$a|b}", 1)[0].split(", ")) == 2  # capped at the option count
    from_file = index.expand("{2$$__colors__}", 5)[0].split(", ")
    assert len(from_file) == 2 and set(from_file) <= {"red", "green", "blue"}
    assert index.expand("{a|{b|c}}", 0)[0] in {"a", "b", "c"}
    assert index.expand("{}", 0) == ("", [])


def test_globs_and_nesting(folder):
    index = WildcardIndex.scan(folder)
    picks = {index.expand("__colors*__", s)[0] for s in range(60)}
    assert picks == {"red", "green", "blue", "black"}
    assert index.expand("__*/cats__", 1)[0].startswith("tabby ")
    assert index.expand("__emoji__", 1) == ("🐱 猫", [])


def test_cycles_are_reported_not_hanging(folder):
    index = WildcardIndex.scan(folder)
    text, warnings = index.expand("__loop__", 1)
    assert text == "again __loop__"
    assert any("cycle" in w for w in warnings)
    text, warnings = index.expand("__ping__", 1)
    assert text == "__ping__" and any("cycle" in w for w in warnings)


def test_depth_limit():
    chain = {f"w{i}": [f"__w{i + 1}__"] for i in range(30)}
    text, warnings = WildcardIndex(chain).expand("__w0__", 0, max_depth=5)
    assert text == "__w5__"
    assert any("deeper than 5" in w for w in warnings)


def test_traversal_and_unknown_names_read_nothing(folder, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("SECRET\n", encoding="utf-8")
    os.symlink(outside / "secret.txt", folder / "linked.txt")
    index = WildcardIndex.scan(folder)
    assert "linked" not in index.names()
    for name in ["../outside/secret", "../../etc/passwd", "/etc/passwd", "C:/x", "./colors", "~/x"]:
        literal = f"__{name}__"
        text, warnings = index.expand(f"a {literal} b", 0)
        assert text == f"a {literal} b"
        assert "not a valid name" in warnings[0], name
    assert index.expand("__..\\x__", 0) == ("__..\\x__", [])  # backslashes never form a name
    assert index.expand("__nope__", 0) == ("__nope__", ["Unknown wildcard __nope__ left as text"])
    assert index.expand("__linked__", 0)[0] == "__linked__"


def test_empty_files_and_unbalanced_braces(folder):
    index = WildcardIndex.scan(folder)
    for name in ("empty", "only_comments"):
        text, warnings = index.expand(f"x __{name}__ y", 0)
        assert text == "x  y" and "no lines" in warnings[0]
    text, warnings = index.expand("{unbalanced __colors__", 0)
    assert text.startswith("{unbalanced ") and "Unbalanced" in warnings[0]
    assert index.expand("snake_case and a__b and ____", 0) == ("snake_case and a__b and ____", [])
    assert index.expand("\\{a|b\\}", 0)[0] == "\\{a|b\\}"


def test_long_hostile_prompt_is_quick(folder):
    index = WildcardIndex.scan(folder)
    text = "{" * 5000 + "__colors__ " * 500
    expanded, warnings = index.expand(text, 3)
    assert expanded.count("{") == 5000 and "__" not in expanded
    assert warnings == ["Unbalanced '{' in prompt left as text"]


def test_shipped_examples_expand_cleanly():
    index = WildcardIndex.scan(ROOT / "wildcards")
    assert {"colors", "shapes", "backgrounds", "scenes/simple"} <= set(index.names())
    for seed in range(20):
        text, warnings = index.expand("__scenes/simple__", seed)
        assert warnings == [] and "__" not in text and text.startswith("a ")
