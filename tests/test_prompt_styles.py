"""Styles from styles.csv apply like A1111's: {prompt} placeholder, else appended with ", "."""
from __future__ import annotations

from pathlib import Path

from webui.prompts import Style, StyleDatabase, merge_style

ROOT = Path(__file__).resolve().parent.parent


def test_placeholder_and_append():
    assert merge_style("{prompt}, oil painting", "a cat") == "a cat, oil painting"
    assert merge_style("oil painting", "a cat ") == "a cat, oil painting"
    assert merge_style("oil painting", "") == "oil painting"
    assert merge_style("", "a cat") == "a cat"
    assert merge_style("art of {prompt}", "") == "art of "


def test_apply_in_order_to_both_prompts(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text(
        'name,prompt,negative_prompt\n'
        'frame,"framed {prompt}","ugly"\n'
        'ink,"ink drawing",\n'
        'old, text column ,\n',
        encoding="utf-8",
    )
    db = StyleDatabase.load(path)
    assert db.names() == ["frame", "ink", "old"]
    assert db.apply("a cat", "blurry", ["frame", "ink"]) == ("framed a cat, ink drawing", "blurry, ugly")
    assert db.apply("a cat", "", ["ink", "frame"]) == ("framed a cat, ink drawing", "ugly")
    assert db.apply("a cat", "", ["missing"]) == ("a cat", "")
    assert db.unknown(["ink", "missing"]) == ["missing"]


def test_old_text_column_and_missing_file(tmp_path):
    (tmp_path / "old.csv").write_text("name,text\nsketch,pencil sketch\n", encoding="utf-8")
    assert StyleDatabase.load(tmp_path / "old.csv").apply("a dog", "", ["sketch"]) == ("a dog, pencil sketch", "")
    assert StyleDatabase.load(tmp_path / "none.csv").names() == []


def test_save_round_trip(tmp_path):
    db = StyleDatabase().with_style(Style("q", 'quoted, "comma" {prompt}', "neg"))
    db.save(tmp_path / "styles.csv")
    again = StyleDatabase.load(tmp_path / "styles.csv")
    assert again.get("q") == Style("q", 'quoted, "comma" {prompt}', "neg")
    assert again.without("q").names() == []


def test_shipped_styles_file():
    db = StyleDatabase.load(ROOT / "styles.csv")
    assert len(db.names()) >= 2
    assert any("{prompt}" in db.get(name).prompt for name in db.names())
    assert db.apply("a red circle", "", ["Plain background"])[0] == "a red circle on a white background"
