"""A1111-style conditioning on tiny random CLIP text encoders with the real tokenizer."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from webui.engine.conditioning import PromptEncoder, apply_emphasis, build_chunks
from webui.engine.prompting import encode_prompts
from webui.models.tokenizers import load_clip_tokenizer
from webui.prompts import prepare_prompt
from webui.schemas import InvalidRequest

BOS, EOS, COMMA = 49406, 49407, 267


def _config(hidden: int, projection: int | None = None) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=projection or hidden,
        bos_token_id=BOS, eos_token_id=EOS, pad_token_id=1,
    )


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    clip_l, clip_g = CLIPTextModel(_config(32)).eval(), CLIPTextModelWithProjection(_config(48, 24)).eval()
    for model in (clip_l, clip_g):
        # A freshly initialised final LayerNorm makes every token's mean exactly 0, so the
        # mean that "Original" emphasis restores would be 0/0; real CLIP has a trained bias.
        torch.nn.init.normal_(getattr(model, "text_model", model).final_layer_norm.bias, std=0.1)
    return {
        "clip_l": clip_l,
        "clip_g": clip_g,
        "tok_l": load_clip_tokenizer("clip_l"),
        "tok_g": load_clip_tokenizer("open_clip"),
    }


@pytest.fixture(scope="module")
def sd1(models):
    return PromptEncoder([models["tok_l"]], [models["clip_l"]], family="sd1")


@pytest.fixture(scope="module")
def sdxl(models):
    return PromptEncoder([models["tok_l"], models["tok_g"]], [models["clip_l"], models["clip_g"]], family="sdxl")


def _padded(tokenizer, text: str, pad: int) -> torch.Tensor:
    ids = [BOS, *tokenizer(text, add_special_tokens=False).input_ids, EOS]
    return torch.tensor([ids + [pad] * (77 - len(ids))])


def test_plain_prompt_equals_direct_encoding(models, sd1):
    cond = sd1.encode(["a red circle on a blue background"])
    assert cond.embeds.shape == (1, 77, 32) and cond.pooled is None
    with torch.no_grad():
        direct = models["clip_l"](input_ids=_padded(models["tok_l"], "a red circle on a blue background", EOS))
    torch.testing.assert_close(cond.embeds, direct.last_hidden_state, rtol=0, atol=0)
    # A weight of exactly 1.0 is plain text.
    torch.testing.assert_close(sd1.encode(["a (red:1.0) circle on a blue background"]).embeds, cond.embeds, rtol=0, atol=0)


def test_weights_change_embeddings_and_keep_the_mean(sd1):
    plain = sd1.encode(["a red circle"]).embeds
    strong = sd1.encode(["a (red:1.5) circle"]).embeds
    weak = sd1.encode(["a [red] circle"]).embeds
    assert not torch.allclose(plain, strong) and not torch.allclose(plain, weak)
    torch.testing.assert_close(strong.mean(), plain.mean(), rtol=1e-4, atol=1e-5)
    # The weighted token (position 2: BOS, "a", "red") grows relative to its neighbours.
    ratio = strong[0, 2] / plain[0, 2]
    assert (ratio / (strong[0, 3] / plain[0, 3])).mean().item() == pytest.approx(1.5, rel=1e-3)


def test_emphasis_helper_modes():
    z = torch.randn(2, 77, 8)
    weights = torch.ones(2, 77)
    assert apply_emphasis(z, weights) is z
    weights[0, 5] = 2.0
    assert torch.equal(apply_emphasis(z, weights, "Ignore"), z)
    no_norm = apply_emphasis(z, weights, "No norm")
    torch.testing.assert_close(no_norm[0, 5], z[0, 5] * 2)
    torch.testing.assert_close(apply_emphasis(z, weights)[1], z[1])  # each prompt keeps its own mean


def test_long_prompts_and_break_make_more_chunks(sd1):
    long = ", ".join(["a red circle"] * 30)  # 119 tokens
    assert sd1.encode([long]).embeds.shape == (1, 154, 32)
    assert sd1.token_count(long) == (119, 150)
    assert sd1.encode(["a red circle BREAK a blue square"]).embeds.shape == (1, 154, 32)
    assert sd1.encode(["a red circle"], min_chunks=3).embeds.shape == (1, 231, 32)
    # In a batch every prompt gets the longest prompt's chunk count.
    assert sd1.encode(["short", long]).embeds.shape == (2, 154, 32)
    assert sd1.chunk_count(["short", long, "x BREAK y BREAK z"]) == 3


def test_break_chunk_is_encoded_on_its_own(sd1):
    both = sd1.encode(["a red circle BREAK a blue square"]).embeds
    torch.testing.assert_close(both[:, :77], sd1.encode(["a red circle"]).embeds)
    torch.testing.assert_close(both[:, 77:], sd1.encode(["a blue square"]).embeds)


def test_comma_backtrack_moves_the_last_words():
    # Segments of (token groups, weight): 70 tokens, a comma, then 10 more.
    segments = [([[320]] * 70, 1.0), ([[COMMA]], 1.0), ([[1125]] * 10, 1.0)]
    chunks, count = build_chunks(segments, id_start=BOS, id_end=EOS, comma_id=COMMA)
    assert len(chunks) == 2 and all(len(c.tokens) == 77 for c in chunks)
    assert chunks[0].tokens[71] == COMMA and chunks[0].tokens[72:] == [EOS] * 5
    assert chunks[1].tokens[1:11] == [1125] * 10
    # Without a comma nearby the cut is at exactly 75 tokens.
    chunks, _ = build_chunks([([[320]] * 80, 1.0)], id_start=BOS, id_end=EOS, comma_id=COMMA)
    assert chunks[0].tokens[1:76] == [320] * 75 and chunks[1].tokens[1:6] == [320] * 5
    # An empty prompt is one chunk of start + end tokens.
    chunks, count = build_chunks([([], 1.0)], id_start=BOS, id_end=EOS, comma_id=COMMA)
    assert chunks[0].tokens == [BOS] + [EOS] * 76 and count == 0


def test_clip_skip(models, sd1):
    one = sd1.encode(["a red circle"], clip_skip=1).embeds
    two = sd1.encode(["a red circle"], clip_skip=2).embeds
    assert not torch.allclose(one, two)
    with torch.no_grad():
        out = models["clip_l"](input_ids=_padded(models["tok_l"], "a red circle", EOS), output_hidden_states=True)
        expected = models["clip_l"].final_layer_norm(out.hidden_states[-2])
    torch.testing.assert_close(two, expected)
    with pytest.raises(InvalidRequest) as error:
        sd1.encode(["x"], clip_skip=3)
    assert error.value.field == "clip_skip"
    with pytest.raises(InvalidRequest):
        sd1.encode(["x"], clip_skip=0)


def test_sd2_pads_with_zero(models):
    sd2 = PromptEncoder([models["tok_g"]], [models["clip_g"]], family="sd2")
    cond = sd2.encode(["a green triangle"], clip_skip=2)  # clip skip is ignored for SD2, as in A1111
    with torch.no_grad():
        direct = models["clip_g"](input_ids=_padded(models["tok_g"], "a green triangle", 0))
    torch.testing.assert_close(cond.embeds, direct.last_hidden_state)
    assert cond.pooled is None


def test_sdxl_concatenates_penultimate_layers(models, sdxl):
    cond = sdxl.encode(["a red circle", "a (blue:1.0) square"])
    assert cond.embeds.shape == (2, 77, 80) and cond.pooled.shape == (2, 24)
    with torch.no_grad():
        out_l = models["clip_l"](input_ids=_padded(models["tok_l"], "a red circle", EOS), output_hidden_states=True)
        out_g = models["clip_g"](input_ids=_padded(models["tok_g"], "a red circle", 0), output_hidden_states=True)
    torch.testing.assert_close(cond.embeds[:1, :, :32], out_l.hidden_states[-2])
    torch.testing.assert_close(cond.embeds[:1, :, 32:], out_g.hidden_states[-2])
    torch.testing.assert_close(cond.pooled[:1], out_g.text_embeds)
    torch.testing.assert_close(sdxl.encode(["a red circle"], clip_skip=2).embeds, cond.embeds[:1])


def test_sdxl_pooled_comes_from_the_first_chunk(sdxl):
    first = ", ".join(["a red circle"] * 18)
    long = sdxl.encode([first + " BREAK a blue square"])
    assert long.embeds.shape == (1, 154, 80)
    torch.testing.assert_close(long.pooled, sdxl.encode([first]).pooled)


def test_sdxl_empty_negative_is_zero(sdxl):
    negative = sdxl.encode([""], negative=True)
    assert negative.embeds.abs().sum() == 0 and negative.pooled.abs().sum() == 0
    assert sdxl.encode([""]).embeds.abs().sum() > 0
    assert sdxl.encode(["blurry"], negative=True).embeds.abs().sum() > 0
    prompts = [prepare_prompt(", ".join(["a red circle"] * 30), negative, seed=0, steps=4) for negative in ("", "blurry")]
    _, negative_at = encode_prompts(_model_of(sdxl), None, prompts, clip_skip=1)
    assert negative_at(0).embeds.shape == (2, 154, 80)
    assert negative_at(0).embeds[0].abs().sum() == 0 and negative_at(0).embeds[1].abs().sum() > 0


def test_refiner_uses_only_the_big_encoder(models):
    refiner = PromptEncoder([models["tok_g"]], [models["clip_g"]], family="sdxl_refiner")
    cond = refiner.encode(["a red circle"])
    assert cond.embeds.shape == (1, 77, 48) and cond.pooled.shape == (1, 24)


def test_batching_does_not_change_a_prompt(sd1):
    alone = sd1.encode(["a (red:1.4) circle"]).embeds
    batched = sd1.encode(["a (red:1.4) circle", "[a] ((blue)) square"]).embeds
    torch.testing.assert_close(batched[:1], alone)


def _model_of(encoder: PromptEncoder) -> SimpleNamespace:
    """The parts of a loaded model that prompt encoding reads."""
    return SimpleNamespace(tokenizers=encoder.tokenizers, text_encoders=encoder.text_encoders, family=encoder.family)


def test_prompt_and_negative_get_the_same_chunk_count(sd1):
    long = ", ".join(["a blue square"] * 30)
    positive_at, negative_at = encode_prompts(_model_of(sd1), None, [prepare_prompt(long, "a red circle", 0, 4)], 1)
    assert positive_at(0).embeds.shape == negative_at(0).embeds.shape == (1, 154, 32)
    torch.testing.assert_close(negative_at(0).embeds, sd1.encode(["a red circle"], min_chunks=2).embeds)


def test_textual_inversion_tokens_are_ordinary_tokens(models):
    tokenizer = load_clip_tokenizer("clip_l")
    tokenizer.add_tokens(["shapey", "shapey_1", "shapey_2"])
    model = CLIPTextModel(_config(32)).eval()
    model.resize_token_embeddings(len(tokenizer))
    encoder = PromptEncoder([tokenizer], [model], family="sd1")
    chunks, count = encoder.tokenize("a (shapey:1.2) circle")
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("shapey", "shapey_1", "shapey_2")]
    assert chunks[0].tokens[2:5] == ids and count == 5
    assert chunks[0].multipliers[2:5] == pytest.approx([1.2] * 3)
    # Text where the embedding loader already spelled out every token gives the same tokens.
    spelled, _ = encoder.tokenize("a (shapey shapey_1 shapey_2:1.2) circle")
    assert spelled[0].tokens == chunks[0].tokens
    torch.testing.assert_close(
        encoder.encode(["a shapey circle"]).embeds, encoder.encode(["a shapey shapey_1 shapey_2 circle"]).embeds
    )
    # A multi-vector embedding is never split across chunks.
    chunks, _ = encoder.tokenize("a " * 74 + "shapey")
    assert chunks[0].tokens[75] == EOS and chunks[1].tokens[1:4] == ids


def test_schedules_switch_conditioning_by_step(sd1):
    prompts = [prepare_prompt("a [red:blue:2] circle", "", 0, 4), prepare_prompt(", ".join(["a square"] * 40), "", 1, 4)]
    positive_at, _ = encode_prompts(_model_of(sd1), None, prompts, clip_skip=1)
    assert positive_at(0).embeds.shape == (2, 154, 32)
    torch.testing.assert_close(positive_at(2).embeds[:1, :77], sd1.encode(["a red circle"]).embeds)
    torch.testing.assert_close(positive_at(3).embeds[:1, :77], sd1.encode(["a blue circle"]).embeds)
    assert positive_at(3).part_index.tolist() == [0, 1]


def test_bad_construction_is_rejected(models):
    with pytest.raises(ValueError, match="unknown model family"):
        PromptEncoder([models["tok_l"]], [models["clip_l"]], family="flux")
    with pytest.raises(ValueError, match="needs 2"):
        PromptEncoder([models["tok_l"]], [models["clip_l"]], family="sdxl")


def test_hostile_prompts(sd1):
    cond = sd1.encode(["🐱 (猫:1.3) ((((( [[[ ]]] \\ BREAK BREAK", "(red:1.1) " * 1000])
    assert cond.embeds.shape[0] == 2 and cond.embeds.shape[1] % 77 == 0
    assert torch.isfinite(cond.embeds).all()
