"""LoRA files in the layouts users download, patched onto tiny real diffusers/transformers models."""
from __future__ import annotations

import copy
import json
import pickle

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from webui.models.lora import LoraPatcher, read_lora_file
from webui.schemas import ModelLoadError

torch.set_num_threads(1)


# ---------------------------------------------------------------- tiny models
def tiny_sd1_unet():
    """SD1's shape in miniature: attention on the high-resolution level, none on the lowest."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    ).eval()


def tiny_sdxl_unet():
    """SDXL's shape in miniature: linear projections, text_time embedding, attention at the low level."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(1)
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=32,
    ).eval()


def tiny_text_encoder(seed=2, projection=False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=100, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=16, projection_dim=32, bos_token_id=98, eos_token_id=99, pad_token_id=99,
    )
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(config).eval()


IDS = torch.tensor([[98, 5, 17, 42, 99, 99]])


def run_sd1(unet):
    torch.manual_seed(3)
    sample = torch.randn(1, 4, 8, 8)
    context = torch.randn(1, 4, 32)
    with torch.no_grad():
        return unet(sample, 10, encoder_hidden_states=context).sample


def run_sdxl(unet):
    torch.manual_seed(4)
    sample = torch.randn(1, 4, 8, 8)
    context = torch.randn(1, 4, 64)
    cond = {"text_embeds": torch.randn(1, 32), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
    with torch.no_grad():
        return unet(sample, 10, encoder_hidden_states=context, added_cond_kwargs=cond).sample


def run_te(encoder):
    with torch.no_grad():
        return encoder(IDS).last_hidden_state


# ---------------------------------------------------------------- LoRA file writers (real key layouts)
def lora_pair(weight, rank, seed, conv_kernel=None):
    """(down, up) for a layer: linear, or LoCon conv (kxk down, 1x1 up)."""
    gen = torch.Generator().manual_seed(seed)
    out_features, in_features = weight.shape[0], weight.shape[1]
    if weight.dim() == 4:
        kh, kw = weight.shape[2:]
        down = torch.randn(rank, in_features, kh, kw, generator=gen) * 0.1
        up = torch.randn(out_features, rank, 1, 1, generator=gen) * 0.1
    else:
        down = torch.randn(rank, in_features, generator=gen) * 0.1
        up = torch.randn(out_features, rank, generator=gen) * 0.1
    return down, up


def kohya_entries(name, weight, rank, alpha, seed):
    down, up = lora_pair(weight, rank, seed)
    return {
        f"{name}.lora_down.weight": down.half(),  # kohya saves fp16
        f"{name}.lora_up.weight": up.half(),
        f"{name}.alpha": torch.tensor(float(alpha)).half(),
    }


def merged(weight, tensors, name, multiplier, down_key="lora_down.weight", up_key="lora_up.weight", alpha=None):
    """Hand merge W + w * (alpha/rank) * up @ down, computed independently of the module under test."""
    down = tensors[f"{name}.{down_key}"].float()
    up = tensors[f"{name}.{up_key}"].float()
    rank = down.shape[0]
    if alpha is None:
        alpha = float(tensors[f"{name}.alpha"]) if f"{name}.alpha" in tensors else rank
    delta = (up.reshape(up.shape[0], rank) @ down.reshape(rank, -1)).reshape(weight.shape)
    return weight.detach().float() + multiplier * (alpha / rank) * delta


def attention_paths(model, kinds=("attn1", "attn2")):
    return [
        path
        for path, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and any(f".{k}." in path for k in kinds)
    ]


def te_paths(encoder):
    return [p for p, m in encoder.named_modules() if isinstance(m, torch.nn.Linear) and ("self_attn" in p or "mlp" in p)]


def kohya_te_name(prefix, path):
    """kohya's text encoder names always start text_model_ (transformers 5's CLIPTextModel lacks that level)."""
    if not path.startswith("text_model."):
        path = "text_model." + path
    return prefix + path.replace(".", "_")


def module(model, path):
    return model.get_submodule(path)


def write_kohya_sd1(path, unet, te, rank=8, alpha=4.0, seed=0, kinds=("attn1", "attn2")):
    """kohya SD1 layout: lora_unet_/lora_te_ + the diffusers/transformers module path with '_' for '.'."""
    tensors = {}
    for i, p in enumerate(attention_paths(unet, kinds)):
        tensors |= kohya_entries("lora_unet_" + p.replace(".", "_"), module(unet, p).weight, rank, alpha, seed + i)
    if te is not None:
        for i, p in enumerate(te_paths(te)):
            tensors |= kohya_entries(kohya_te_name("lora_te_", p), module(te, p).weight, rank, alpha, seed + 500 + i)
    save_file(tensors, str(path), metadata={"ss_network_dim": str(rank), "ss_network_alpha": str(alpha)})
    return {k: v.clone() for k, v in tensors.items()}


@pytest.fixture()
def sd1():
    unet, te = tiny_sd1_unet(), tiny_text_encoder()
    return unet, te, LoraPatcher(unet, [te], "sd1")


# ---------------------------------------------------------------- SD1 kohya
def test_kohya_lora_changes_output_and_matches_hand_merge(sd1, tmp_path):
    unet, te, patcher = sd1
    base_unet, base_te = run_sd1(unet), run_te(te)
    expected_unet, expected_te = copy.deepcopy(unet), copy.deepcopy(te)
    tensors = write_kohya_sd1(tmp_path / "style.safetensors", unet, te)
    # A literal name from real SD1 kohya files must be among the ones written.
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in tensors
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in tensors

    warnings = patcher.apply([("style", tmp_path / "style.safetensors", 0.6, 0.8)])

    assert warnings == []
    with torch.no_grad():
        for p in attention_paths(unet):
            name = "lora_unet_" + p.replace(".", "_")
            module(expected_unet, p).weight.copy_(merged(module(expected_unet, p).weight, tensors, name, 0.8))
            assert torch.allclose(module(unet, p).weight, module(expected_unet, p).weight, atol=1e-6)
        for p in te_paths(te):
            name = kohya_te_name("lora_te_", p)
            module(expected_te, p).weight.copy_(merged(module(expected_te, p).weight, tensors, name, 0.6))
    out_unet, out_te = run_sd1(unet), run_te(te)
    assert not torch.allclose(out_unet, base_unet, atol=1e-4)
    assert not torch.allclose(out_te, base_te, atol=1e-4)
    assert torch.allclose(out_unet, run_sd1(expected_unet), atol=1e-5)
    assert torch.allclose(out_te, run_te(expected_te), atol=1e-5)
    assert patcher.active() == [("style", 0.6, 0.8)]


def test_two_loras_add_up(sd1, tmp_path):
    unet, te, patcher = sd1
    a = write_kohya_sd1(tmp_path / "a.safetensors", unet, None, rank=4, alpha=4.0, seed=10)
    b = write_kohya_sd1(tmp_path / "b.safetensors", unet, None, rank=8, alpha=2.0, seed=20, kinds=("attn2",))
    originals = {p: module(unet, p).weight.detach().clone() for p in attention_paths(unet)}

    patcher.apply([("a", tmp_path / "a.safetensors", 1.0, 0.7), ("b", tmp_path / "b.safetensors", 1.0, -0.5)])

    for p in attention_paths(unet):
        name = "lora_unet_" + p.replace(".", "_")
        expected = merged(originals[p], a, name, 0.7)
        if ".attn2." in p:
            expected = expected + merged(originals[p], b, name, -0.5) - originals[p]
        assert torch.allclose(module(unet, p).weight, expected, atol=1e-6), p


def test_reweighting_recomputes_only_the_layers_of_the_changed_lora(sd1, tmp_path):
    unet, te, patcher = sd1
    write_kohya_sd1(tmp_path / "a.safetensors", unet, te, seed=1, kinds=("attn1",))
    b = write_kohya_sd1(tmp_path / "b.safetensors", unet, None, seed=2, kinds=("attn2",))
    originals = {p: module(unet, p).weight.detach().clone() for p in attention_paths(unet)}
    patcher.apply([("a", tmp_path / "a.safetensors", 1.0, 1.0), ("b", tmp_path / "b.safetensors", 1.0, 1.0)])
    before = {p: module(unet, p).weight for p in attention_paths(unet)}
    te_before = {q: module(te, q).weight for q in te_paths(te)}

    patcher.apply([("a", tmp_path / "a.safetensors", 1.0, 1.0), ("b", tmp_path / "b.safetensors", 1.0, 0.25)])

    for p, param in before.items():
        if ".attn1." in p:
            assert module(unet, p).weight is param, f"{p} was recomputed though its LoRA did not change"
        else:
            assert module(unet, p).weight is not param
            name = "lora_unet_" + p.replace(".", "_")
            assert torch.allclose(module(unet, p).weight, merged(originals[p], b, name, 0.25), atol=1e-6)
    assert all(module(te, q).weight is te_before[q] for q in te_paths(te))
    assert patcher.active() == [("a", 1.0, 1.0), ("b", 1.0, 0.25)]


def test_removing_restores_exact_output_and_parameter_objects(sd1, tmp_path):
    unet, te, patcher = sd1
    params = {n: p for n, p in unet.named_parameters()} | {f"te.{n}": p for n, p in te.named_parameters()}
    base_unet, base_te = run_sd1(unet), run_te(te)
    write_kohya_sd1(tmp_path / "a.safetensors", unet, te, seed=5)
    write_kohya_sd1(tmp_path / "b.safetensors", unet, te, seed=6, kinds=("attn2",))

    patcher.apply([("a", tmp_path / "a.safetensors", 1.0, 1.0), ("b", tmp_path / "b.safetensors", 0.5, 0.5)])
    assert not torch.equal(run_sd1(unet), base_unet)
    patcher.apply([("b", tmp_path / "b.safetensors", 0.5, 0.5)])  # drop a, keep b
    patcher.apply([])  # next job has no LoRA

    assert torch.equal(run_sd1(unet), base_unet)
    assert torch.equal(run_te(te), base_te)
    now = {n: p for n, p in unet.named_parameters()} | {f"te.{n}": p for n, p in te.named_parameters()}
    assert now.keys() == params.keys() and all(now[n] is params[n] for n in params)
    assert patcher.active() == [] and patcher.patched_layers == 0

    patcher.apply([("a", tmp_path / "a.safetensors", 1.0, 1.0)])
    patcher.clear()
    assert torch.equal(run_sd1(unet), base_unet)
    assert all(p is params[n] for n, p in unet.named_parameters())


def test_locon_conv_layers_match_the_two_convolutions_they_replace(sd1, tmp_path):
    unet, te, patcher = sd1
    conv_paths = ["down_blocks.0.resnets.0.conv1", "up_blocks.1.resnets.2.conv2", "down_blocks.0.attentions.0.proj_in"]
    tensors = {}
    for i, p in enumerate(conv_paths):
        weight = module(unet, p).weight
        assert weight.dim() == 4
        tensors |= kohya_entries("lora_unet_" + p.replace(".", "_"), weight, 4, 2.0, 40 + i)
    save_file(tensors, str(tmp_path / "locon.safetensors"))
    originals = {p: module(unet, p).weight.detach().clone() for p in conv_paths}

    assert patcher.apply([("locon", tmp_path / "locon.safetensors", 1.0, 0.9)]) == []

    x = torch.randn(1, 32, 8, 8)
    for p in conv_paths:
        name = "lora_unet_" + p.replace(".", "_")
        down, up = tensors[f"{name}.lora_down.weight"].float(), tensors[f"{name}.lora_up.weight"].float()
        pad = down.shape[-1] // 2
        x_in = x[:, : down.shape[1]]
        with torch.no_grad():
            via_lora = F.conv2d(F.conv2d(x_in, down, padding=pad), up) * 0.9 * (2.0 / 4)
            via_patch = F.conv2d(x_in, module(unet, p).weight - originals[p], padding=pad)
        assert torch.allclose(via_lora, via_patch, atol=1e-5), p


# ---------------------------------------------------------------- SDXL kohya (SGM names)
# Real kohya SDXL names (original SGM UNet) and the diffusers modules they mean, for this
# UNet with two layers per block: input_blocks 1-3 are level 0 (3 = downsampler), 4-6 level 1.
SDXL_NAMES = {
    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q": "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
    "lora_unet_input_blocks_5_1_transformer_blocks_1_attn2_to_k": "down_blocks.1.attentions.1.transformer_blocks.1.attn2.to_k",
    "lora_unet_input_blocks_5_1_proj_in": "down_blocks.1.attentions.1.proj_in",
    "lora_unet_middle_block_1_transformer_blocks_0_ff_net_0_proj": "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj",
    "lora_unet_output_blocks_1_1_transformer_blocks_1_attn2_to_out_0": "up_blocks.0.attentions.1.transformer_blocks.1.attn2.to_out.0",
    "lora_unet_output_blocks_2_1_proj_out": "up_blocks.0.attentions.2.proj_out",
    "lora_unet_input_blocks_0_0": "conv_in",
    "lora_unet_input_blocks_1_0_in_layers_2": "down_blocks.0.resnets.0.conv1",
    "lora_unet_input_blocks_4_0_emb_layers_1": "down_blocks.1.resnets.0.time_emb_proj",
    "lora_unet_input_blocks_4_0_skip_connection": "down_blocks.1.resnets.0.conv_shortcut",
    "lora_unet_input_blocks_3_0_op": "down_blocks.0.downsamplers.0.conv",
    "lora_unet_middle_block_2_out_layers_3": "mid_block.resnets.1.conv2",
    "lora_unet_output_blocks_2_2_conv": "up_blocks.0.upsamplers.0.conv",
    "lora_unet_output_blocks_3_0_skip_connection": "up_blocks.1.resnets.0.conv_shortcut",
    "lora_unet_time_embed_0": "time_embedding.linear_1",
    "lora_unet_label_emb_0_2": "add_embedding.linear_2",
    "lora_unet_out_2": "conv_out",
}
SDXL_TE_NAMES = {
    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj": (0, "encoder.layers.0.self_attn.q_proj"),
    "lora_te1_text_model_encoder_layers_1_mlp_fc2": (0, "encoder.layers.1.mlp.fc2"),
    "lora_te2_text_model_encoder_layers_1_self_attn_out_proj": (1, "text_model.encoder.layers.1.self_attn.out_proj"),
    "lora_te2_text_model_encoder_layers_0_mlp_fc1": (1, "text_model.encoder.layers.0.mlp.fc1"),
}


def test_kohya_sdxl_lora_with_sgm_unet_names_and_two_text_encoders(tmp_path):
    unet = tiny_sdxl_unet()
    encoders = [tiny_text_encoder(7), tiny_text_encoder(8, projection=True)]
    patcher = LoraPatcher(unet, encoders, "sdxl")
    base = run_sdxl(unet)
    base_te = [run_te(e) for e in encoders]
    expected = copy.deepcopy(unet)
    tensors = {}
    for i, (name, path) in enumerate(SDXL_NAMES.items()):
        tensors |= kohya_entries(name, module(unet, path).weight, 4, 1.0, 100 + i)
    for i, (name, (index, path)) in enumerate(SDXL_TE_NAMES.items()):
        tensors |= kohya_entries(name, module(encoders[index], path).weight, 4, 1.0, 200 + i)
    save_file(tensors, str(tmp_path / "xl.safetensors"))
    te_originals = {name: module(encoders[i], p).weight.detach().clone() for name, (i, p) in SDXL_TE_NAMES.items()}

    assert patcher.apply([("xl", tmp_path / "xl.safetensors", 0.5, 1.5)]) == []

    with torch.no_grad():
        for name, path in SDXL_NAMES.items():
            module(expected, path).weight.copy_(merged(module(expected, path).weight, tensors, name, 1.5))
            assert torch.allclose(module(unet, path).weight, module(expected, path).weight, atol=1e-6), name
    for name, (index, path) in SDXL_TE_NAMES.items():
        assert torch.allclose(module(encoders[index], path).weight, merged(te_originals[name], tensors, name, 0.5), atol=1e-6)
    out = run_sdxl(unet)
    assert not torch.allclose(out, base, atol=1e-4)
    assert torch.allclose(out, run_sdxl(expected), atol=1e-5)

    patcher.apply([])
    assert torch.equal(run_sdxl(unet), base)
    assert all(torch.equal(run_te(e), b) for e, b in zip(encoders, base_te))


def test_sd1_upsampler_sgm_name_follows_blocks_without_attention(tmp_path):
    """SD1-style: the lowest up block has no attention, so its upsampler is output_blocks.2.1.conv."""
    unet = tiny_sd1_unet()
    patcher = LoraPatcher(unet, [], "sd1")
    name = "lora_unet_output_blocks_2_1_conv"
    tensors = kohya_entries(name, module(unet, "up_blocks.0.upsamplers.0.conv").weight, 4, 4.0, 9)
    save_file(tensors, str(tmp_path / "up.safetensors"))
    original = module(unet, "up_blocks.0.upsamplers.0.conv").weight.detach().clone()
    assert patcher.apply([("up", tmp_path / "up.safetensors", 1, 1)]) == []
    assert torch.allclose(module(unet, "up_blocks.0.upsamplers.0.conv").weight, merged(original, tensors, name, 1.0), atol=1e-6)


def test_sdxl_lora_on_sd1_model_warns_and_changes_nothing(sd1, tmp_path):
    unet, te, patcher = sd1
    base = run_sd1(unet)
    tensors = {}
    tensors |= kohya_entries("lora_te2_text_model_encoder_layers_0_mlp_fc1", torch.zeros(5120, 1280), 4, 1.0, 1)
    tensors |= kohya_entries("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", torch.zeros(640, 640), 4, 1.0, 3)
    save_file(tensors, str(tmp_path / "xl_only.safetensors"))
    warnings = patcher.apply([("xl_only", tmp_path / "xl_only.safetensors", 1, 1)])
    assert len(warnings) == 1 and "xl_only.safetensors" in warnings[0] and "sd1" in warnings[0]
    assert torch.equal(run_sd1(unet), base)


# ---------------------------------------------------------------- diffusers / peft
def test_peft_format_with_alpha_from_adapter_metadata(sd1, tmp_path):
    unet, te, patcher = sd1
    base_te = run_te(te)
    tensors = {}
    unet_paths = attention_paths(unet)[:6]
    for i, p in enumerate(unet_paths):
        down, up = lora_pair(module(unet, p).weight, 4, 300 + i)
        tensors[f"unet.{p}.lora_A.weight"], tensors[f"unet.{p}.lora_B.weight"] = down, up
    q = "encoder.layers.0.self_attn.q_proj"
    down, up = lora_pair(module(te, q).weight, 4, 400)
    tensors[f"text_encoder.text_model.{q}.lora_A.weight"], tensors[f"text_encoder.text_model.{q}.lora_B.weight"] = down, up
    meta = {"lora_adapter_metadata": json.dumps({"unet.lora_alpha": 8, "unet.r": 4, "text_encoder.lora_alpha": 4, "text_encoder.r": 4})}
    save_file(tensors, str(tmp_path / "peft.safetensors"), metadata=meta)
    originals = {p: module(unet, p).weight.detach().clone() for p in unet_paths}

    assert patcher.apply([("peft", tmp_path / "peft.safetensors", 1.0, 0.5)]) == []

    for p in unet_paths:
        expected = merged(originals[p], tensors, f"unet.{p}", 0.5, "lora_A.weight", "lora_B.weight", alpha=8)
        assert torch.allclose(module(unet, p).weight, expected, atol=1e-6)
    assert not torch.allclose(run_te(te), base_te, atol=1e-4)


def test_old_diffusers_attention_processor_names(sd1, tmp_path):
    unet, te, patcher = sd1
    p = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0"
    down, up = lora_pair(module(unet, p).weight, 4, 500)
    name = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora"
    tensors = {f"{name}.down.weight": down, f"{name}.up.weight": up}
    save_file(tensors, str(tmp_path / "old.safetensors"))
    original = module(unet, p).weight.detach().clone()
    assert patcher.apply([("old", tmp_path / "old.safetensors", 1, 1)]) == []
    assert torch.allclose(module(unet, p).weight, merged(original, tensors, name, 1.0, "down.weight", "up.weight"), atol=1e-6)


# ---------------------------------------------------------------- LyCORIS LoHa / LoKr
def test_loha_and_lokr_follow_their_formulas(sd1, tmp_path):
    unet, te, patcher = sd1
    g = torch.Generator().manual_seed(7)
    loha_path = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k"  # 32x32
    lokr_path = "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2"  # 32x128
    loha = "lora_unet_" + loha_path.replace(".", "_")
    lokr = "lora_unet_" + lokr_path.replace(".", "_")
    t = {
        f"{loha}.hada_w1_a": torch.randn(32, 4, generator=g), f"{loha}.hada_w1_b": torch.randn(4, 32, generator=g),
        f"{loha}.hada_w2_a": torch.randn(32, 4, generator=g), f"{loha}.hada_w2_b": torch.randn(4, 32, generator=g),
        f"{loha}.alpha": torch.tensor(2.0),
        f"{lokr}.lokr_w1": torch.randn(4, 8, generator=g),
        f"{lokr}.lokr_w2_a": torch.randn(8, 2, generator=g), f"{lokr}.lokr_w2_b": torch.randn(2, 16, generator=g),
        f"{lokr}.alpha": torch.tensor(1.0),
    }
    save_file(t, str(tmp_path / "lyco.safetensors"))
    w_loha = module(unet, loha_path).weight.detach().clone()
    w_lokr = module(unet, lokr_path).weight.detach().clone()

    assert patcher.apply([("lyco", tmp_path / "lyco.safetensors", 1, 0.5)]) == []

    loha_delta = (t[f"{loha}.hada_w1_a"] @ t[f"{loha}.hada_w1_b"]) * (t[f"{loha}.hada_w2_a"] @ t[f"{loha}.hada_w2_b"])
    assert torch.allclose(module(unet, loha_path).weight, w_loha + 0.5 * (2.0 / 4) * loha_delta, atol=1e-5)
    lokr_delta = torch.kron(t[f"{lokr}.lokr_w1"], t[f"{lokr}.lokr_w2_a"] @ t[f"{lokr}.lokr_w2_b"])
    assert torch.allclose(module(unet, lokr_path).weight, w_lokr + 0.5 * (1.0 / 2) * lokr_delta, atol=1e-5)


# ---------------------------------------------------------------- what cannot be applied
def test_unsupported_format_warns_naming_the_file_and_leaves_weights(sd1, tmp_path):
    unet, te, patcher = sd1
    params = {n: p for n, p in unet.named_parameters()}
    base = run_sd1(unet)
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({f"{name}.oft_blocks": torch.randn(4, 8, 8), f"{name}.alpha": torch.tensor(1.0)}, str(tmp_path / "oft_style.safetensors"))
    write_kohya_sd1(tmp_path / "good.safetensors", unet, None, kinds=("attn2",))

    warnings = patcher.apply([("oft_style", tmp_path / "oft_style.safetensors", 1, 1)])
    assert len(warnings) == 1 and "oft_style.safetensors" in warnings[0] and "OFT" in warnings[0]
    assert torch.equal(run_sd1(unet), base)
    assert all(p is params[n] for n, p in unet.named_parameters())
    assert patcher.active() == []

    # Next to a good LoRA, the job still runs with the good one applied.
    warnings = patcher.apply([("oft_style", tmp_path / "oft_style.safetensors", 1, 1), ("good", tmp_path / "good.safetensors", 1, 1)])
    assert len(warnings) == 1
    assert not torch.equal(run_sd1(unet), base)
    assert patcher.active() == [("good", 1.0, 1.0)]


class _Payload:
    pass


def test_other_files_and_code_pickles_are_refused(sd1, tmp_path):
    unet, te, patcher = sd1
    (tmp_path / "x.bin").write_bytes(b"\0" * 16)
    with pytest.raises(ModelLoadError, match="x.bin"):
        read_lora_file(tmp_path / "x.bin")
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"a": _Payload()}, handle)
    with pytest.raises(ModelLoadError, match="evil.pt"):
        read_lora_file(tmp_path / "evil.pt")
    warnings = patcher.apply([("evil", tmp_path / "evil.pt", 1, 1), ("gone", tmp_path / "gone.safetensors", 1, 1)])
    assert len(warnings) == 2 and "evil.pt" in warnings[0] and "gone.safetensors" in warnings[1]


def test_pt_lora_is_read_with_weights_only(sd1, tmp_path):
    unet, te, patcher = sd1
    tensors = write_kohya_sd1(tmp_path / "tmp.safetensors", unet, None, kinds=("attn1",))
    torch.save(tensors, tmp_path / "classic.pt")
    p = attention_paths(unet, ("attn1",))[0]
    original = module(unet, p).weight.detach().clone()
    assert patcher.apply([("classic", tmp_path / "classic.pt", 1, 1)]) == []
    assert torch.allclose(module(unet, p).weight, merged(original, tensors, "lora_unet_" + p.replace(".", "_"), 1.0), atol=1e-6)


def test_a_replaced_file_is_read_again(sd1, tmp_path):
    unet, te, patcher = sd1
    import os

    path = tmp_path / "style.safetensors"
    write_kohya_sd1(path, unet, None, seed=1, kinds=("attn1",))
    patcher.apply([("style", path, 1, 1)])
    first = run_sd1(unet)
    write_kohya_sd1(path, unet, None, seed=2, kinds=("attn1",))
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    patcher.apply([("style", path, 1, 1)])
    assert not torch.allclose(run_sd1(unet), first, atol=1e-4)


def test_half_precision_layers_are_merged_in_float32_then_cast(tmp_path):
    te = tiny_text_encoder(11).to(torch.bfloat16)
    patcher = LoraPatcher(None, [te], "sd1")
    p = "encoder.layers.0.self_attn.v_proj"
    name = kohya_te_name("lora_te_", p)
    tensors = kohya_entries(name, module(te, p).weight, 4, 2.0, 77)
    save_file(tensors, str(tmp_path / "te_only.safetensors"))
    original = module(te, p).weight

    assert patcher.apply([("te_only", tmp_path / "te_only.safetensors", 0.7, 1.0)]) == []

    patched = module(te, p).weight
    assert patched.dtype == torch.bfloat16
    assert torch.equal(patched, merged(original, tensors, name, 0.7).to(torch.bfloat16))
    patcher.clear()
    assert module(te, p).weight is original


def test_locon_tucker_mid_matches_three_convolutions(sd1, tmp_path):
    unet, te, patcher = sd1
    p = "down_blocks.0.resnets.1.conv2"  # 32 -> 32, 3x3
    g = torch.Generator().manual_seed(12)
    name = "lora_unet_" + p.replace(".", "_")
    down, mid, up = torch.randn(4, 32, 1, 1, generator=g), torch.randn(4, 4, 3, 3, generator=g), torch.randn(32, 4, 1, 1, generator=g)
    save_file({f"{name}.lora_down.weight": down, f"{name}.lora_mid.weight": mid, f"{name}.lora_up.weight": up,
               f"{name}.alpha": torch.tensor(2.0)}, str(tmp_path / "tucker.safetensors"))
    original = module(unet, p).weight.detach().clone()

    assert patcher.apply([("tucker", tmp_path / "tucker.safetensors", 1, 0.3)]) == []

    x = torch.randn(1, 32, 8, 8, generator=g)
    with torch.no_grad():
        via_lora = F.conv2d(F.conv2d(F.conv2d(x, down), mid, padding=1), up) * 0.3 * (2.0 / 4)
        via_patch = F.conv2d(x, module(unet, p).weight - original, padding=1)
    assert torch.allclose(via_lora, via_patch, atol=1e-4)
