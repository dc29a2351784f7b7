"""The History tab's listing: every saved image, newest first, found by prompt words, model, seed and day."""
from __future__ import annotations

import os

import pytest
from PIL import Image

from webui.history import OutputHistory
from webui.images import save_image


def _infotext(prompt: str, seed: int, model: str = "demo-shapes", negative: str = "") -> str:
    return (f"{prompt}\nNegative prompt: {negative}\nSteps: 5, Sampler: Euler, CFG scale: 7, Seed: {seed}, "
            f"Size: 64x64, Model hash: abc123, Model: {model}")


@pytest.fixture
def outdir(tmp_path):
    made = [
        ("txt2img-images", "a red circle", 11, "demo-shapes", ""),
        ("txt2img-images", "a blue square", 22, "other-model", "blurry"),
        ("img2img-images", "a red triangle", 33, "demo-shapes", ""),
    ]
    for number, (category, prompt, seed, model, negative) in enumerate(made):
        path = save_image(Image.new("RGB", (8, 8)), tmp_path, category, seed=seed,
                          infotext=_infotext(prompt, seed, model, negative))
        os.utime(path, (1_700_000_000 + number * 86_400,) * 2)  # one a day
    save_image(Image.new("RGB", (8, 8)), tmp_path, "extras-images", seed=None, infotext=None)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_lists_every_image_newest_first(outdir):
    entries = OutputHistory(outdir).entries()
    assert len(entries) == 4
    assert [e.seed for e in entries[1:]] == [33, 22, 11]
    assert entries[1].folder.startswith("img2img-images/")


def test_search_by_prompt_words_seed_model_and_day(outdir):
    history = OutputHistory(outdir)
    assert [e.seed for e in history.search("RED")] == [33, 11]
    assert [e.seed for e in history.search("red circle")] == [11]
    assert [e.seed for e in history.search("blurry")] == [22]  # the negative prompt counts too
    assert [e.seed for e in history.search(seed=22)] == [22]
    assert [e.seed for e in history.search(model="OTHER")] == [22]
    assert [e.seed for e in history.search(model="abc123")] == [33, 22, 11]
    day = history.search(seed=11)[0].day
    assert day in history.days() and [e.seed for e in history.search(day=day)] == [11]
    assert history.search("red", seed=22) == []


def test_latest_is_the_newest_image_with_parameters(outdir):
    assert OutputHistory(outdir).latest().seed == 33  # the extras image carries none


def test_delete_only_listed_images(outdir, tmp_path_factory):
    history = OutputHistory(outdir)
    target = history.search(seed=22)[0].path
    target.with_suffix(".txt").write_text("infotext")
    history.delete(str(target))
    assert not target.exists() and not target.with_suffix(".txt").exists()
    assert history.search(seed=22) == []
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "keep.png"
    Image.new("RGB", (4, 4)).save(elsewhere)
    for path in (elsewhere, outdir / "notes.txt", outdir / ".." / elsewhere.name):
        with pytest.raises(FileNotFoundError):
            history.delete(path)
    assert elsewhere.exists() and (outdir / "notes.txt").exists()


def test_a_changed_file_is_read_again(outdir):
    history = OutputHistory(outdir)
    entry = history.search(seed=11)[0]
    Image.new("RGB", (8, 8)).save(entry.path, pnginfo=None)  # parameters gone
    os.utime(entry.path, (entry.modified + 5,) * 2)
    assert history.search(seed=11) == []
