"""Extra-network cards: A1111's preview file names, what a click inserts, a LoRA's ss_* tags on request."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from PIL import Image

pytest.importorskip("gradio")

from webui.ui import network_cards  # noqa: E402


def test_preview_is_name_preview_png_then_name_png(tmp_path):
    model = tmp_path / "style.safetensors"
    model.write_bytes(b"x")
    assert network_cards.preview_path(model) is None
    Image.new("RGB", (300, 200), (200, 0, 0)).save(tmp_path / "style.png")
    assert network_cards.preview_path(model) == tmp_path / "style.png"
    Image.new("RGB", (300, 200), (0, 200, 0)).save(tmp_path / "style.preview.png")
    assert network_cards.preview_path(model) == tmp_path / "style.preview.png"
    uri = network_cards.ThumbnailCache().data_uri(tmp_path / "style.preview.png")
    assert uri.startswith("data:image/jpeg;base64,")


def test_cards_list_every_kind_with_its_inserted_text(tmp_path):
    lora_path = tmp_path / "outline.safetensors"
    lora_path.write_bytes(b"x")
    Image.new("RGB", (64, 64)).save(tmp_path / "outline.preview.png")
    lora = SimpleNamespace(name="outline", path=lora_path, trigger_words=["edge", "line"], metadata={})
    catalog = SimpleNamespace(
        checkpoints=lambda: [SimpleNamespace(title="demo.safetensors [abc]", path=tmp_path / "demo.safetensors")],
        loras=lambda: [lora],
        embeddings=lambda: [SimpleNamespace(stem="bad-hands", path=tmp_path / "bad-hands.pt")],
    )
    services = SimpleNamespace(catalog=catalog, wildcards=SimpleNamespace(names=lambda: ["animal"]))
    cards = network_cards.collect_cards(services, network_cards.ThumbnailCache())
    assert [c.text for c in cards["lora"]] == ["<lora:outline:{w}>"] and cards["lora"][0].preview
    assert [c.text for c in cards["embedding"]] == ["bad-hands"]
    assert [c.text for c in cards["wildcard"]] == ["__animal__"]
    page = network_cards.cards_html("txt2img", cards)
    assert "data-text='&lt;lora:outline:{w}&gt;'" in page and "Checkpoints (1)" in page
    assert "id='txt2img_network_weight'" in page and page.count("class='card-meta'") == 1


def test_card_text_cannot_break_out_of_the_page():
    card = network_cards.Card("lora", "x' onmouseover='alert(1)", "<lora:x:{w}>")
    page = network_cards.cards_html("txt2img", {"lora": [card]})
    assert "onmouseover='alert" not in page


def test_lora_metadata_shows_only_ss_tags():
    info = SimpleNamespace(metadata={"ss_network_dim": "4", "ss_base_model_version": "sd_v1", "format": "pt"})
    services = SimpleNamespace(catalog=SimpleNamespace(find_lora=lambda name: info))
    text = network_cards.lora_metadata_text(services, "outline")
    assert '"ss_network_dim": "4"' in text and "format" not in text
    info.metadata = {}
    assert "no ss_* training metadata" in network_cards.lora_metadata_text(services, "outline")
