"""<lora:...> tags are taken out of the prompt with A1111's weight rules; embeddings found by name."""
from __future__ import annotations

from webui.prompts import LoraSpec, extract_extra_networks, find_embedding_names, lora_specs, resolve_loras


def specs(prompt):
    clean, tags = extract_extra_networks(prompt)
    found, warnings = lora_specs(tags)
    return clean, found, warnings


def test_weight_forms():
    clean, found, warnings = specs("a cat <lora:ink:0.6>, <lora:Pencil-v2>  <lora:mix:0.5:0.9> <lora:n:te=0.3:unet=0.7>")
    assert clean == "a cat ,    "
    assert warnings == []
    assert found == [
        LoraSpec("ink", 0.6, 0.6),
        LoraSpec("Pencil-v2", 1.0, 1.0),
        LoraSpec("mix", 0.5, 0.9),
        LoraSpec("n", 0.3, 0.7),
    ]
    assert specs("<lora:d:1:1:8>")[1] == [LoraSpec("d", 1.0, 1.0, 8)]
    assert specs("<lora:d:0.4:unet=0>")[1] == [LoraSpec("d", 0.4, 0.0)]
    assert specs("<lyco:old:0.2>")[1] == [LoraSpec("old", 0.2, 0.2)]


def test_other_kinds_are_generic():
    clean, tags = extract_extra_networks("x <hypernet:anime:0.5> y <LoRA:Up:1>")
    assert clean == "x  y "
    assert [(t.kind, t.name, t.positional) for t in tags] == [("hypernet", "anime", ("anime", "0.5")), ("lora", "Up", ("Up", "1"))]
    assert lora_specs(tags)[0] == [LoraSpec("Up", 1.0, 1.0)]


def test_malformed_tags_warn():
    clean, found, warnings = specs("<lora:bad:heavy> <lora:ok:1> <not a tag> <lora:>")
    assert found == [LoraSpec("ok", 1.0, 1.0)]
    assert "weights must be numbers" in warnings[0]
    assert "<not a tag>" in clean and "<lora:>" in clean


def test_resolve_against_catalog_names():
    requested = [LoraSpec("INK", 0.5, 0.5), LoraSpec("missing"), LoraSpec("ink", 1, 1), LoraSpec("dir/x")]
    resolved, warnings = resolve_loras(requested, ["ink", "Pencil", "dir/x"])
    assert resolved == [LoraSpec("ink", 0.5, 0.5), LoraSpec("dir/x")]
    assert warnings == ["LoRA 'missing' not found; ignored", "LoRA 'ink' is given more than once; only the first tag is used"]


def test_embedding_names_whole_words():
    known = ["easynegative", "bad-hands-5", "cat"]
    assert find_embedding_names("(EasyNegative:1.2), bad-hands-5, catalog", known) == ["easynegative", "bad-hands-5"]
    assert find_embedding_names("a cat, easynegative", known) == ["cat", "easynegative"]
    assert find_embedding_names("bad-hands-50", known) == []
