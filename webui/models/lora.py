"""LoRA files: read the formats users download and patch them onto loaded modules reversibly.

Formats: kohya/A1111 (``lora_unet_*``, ``lora_te_*``, SDXL ``lora_te1_*``/``lora_te2_*``,
whose SDXL UNet names follow the original SGM/LDM UNet), LoCon/LyCORIS convolution
layers (with or without a Tucker ``lora_mid``), LoHa, LoKr, LyCORIS full ``diff``,
and diffusers/peft (``*.lora_A.weight``/``lora_B``, old ``*_lora.down.weight``).
Anything else (OFT, DoRA, Tucker LoHa/LoKr...) is reported by name and skipped.

Patching never writes into a weight tensor: each patched layer gets a new
``nn.Parameter`` holding ``W + sum(w * scale * delta)`` computed in float32 from the
original, and removing a LoRA assigns the original Parameter object back. So the
weights can share storage with a RAM cache of state dicts, and after removal the
outputs are bit for bit those of the model without LoRAs.
"""
from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from webui.models.ldm_names import layers_per_block, ldm_unet_name
from webui.schemas import ModelLoadError, WebUIError
from webui.tensor_files import read_tensor_file

log = logging.getLogger(__name__)

LORA_FILE_SUFFIXES = (".safetensors", ".pt", ".ckpt")

# Key suffixes of one layer's tensors, longest first so that "lora_linear_layer.down.weight"
# wins over "down.weight". Values: the role of the tensor in its module.
_SUFFIXES: tuple[tuple[str, str], ...] = tuple(
    sorted(
        {
            "lora_down.weight": "down",
            "lora_up.weight": "up",
            "lora_mid.weight": "mid",
            "lora_A.weight": "down",
            "lora_B.weight": "up",
            "lora.down.weight": "down",
            "lora.up.weight": "up",
            "lora_linear_layer.down.weight": "down",
            "lora_linear_layer.up.weight": "up",
            "alpha": "alpha",
            "hada_w1_a": "hada_w1_a",
            "hada_w1_b": "hada_w1_b",
            "hada_w2_a": "hada_w2_a",
            "hada_w2_b": "hada_w2_b",
            "hada_t1": "hada_t1",
            "hada_t2": "hada_t2",
            "lokr_w1": "lokr_w1",
            "lokr_w1_a": "lokr_w1_a",
            "lokr_w1_b": "lokr_w1_b",
            "lokr_w2": "lokr_w2",
            "lokr_w2_a": "lokr_w2_a",
            "lokr_w2_b": "lokr_w2_b",
            "lokr_t2": "lokr_t2",
            "diff": "diff",
            "dora_scale": "dora_scale",
        }.items(),
        key=lambda kv: -len(kv[0]),
    )
)

# Roles that make a layer impossible to apply here, with the name users know the format by.
_UNSUPPORTED_ROLES = {
    "hada_t1": "LoHa with Tucker decomposition",
    "hada_t2": "LoHa with Tucker decomposition",
    "lokr_t2": "LoKr with Tucker decomposition",
    "dora_scale": "DoRA",
}
# Key fragments of formats we recognise but do not apply.
_UNSUPPORTED_MARKERS = (
    ("oft_", "OFT/BOFT"),
    ("boft_", "OFT/BOFT"),
    ("glora", "GLoRA"),
    (".a1.weight", "GLoRA"),
    ("on_input", "IA3"),
    ("diff_b", "bias patches"),
    ("w_norm", "norm-layer patches"),
    ("b_norm", "norm-layer patches"),
)

_KOHYA_RE = re.compile(r"^(lora_(?:unet|te\d?)_[^.]+)\.(.+)$")


# ---------------------------------------------------------------- one layer of a file
@dataclass
class LoraModule:
    """The tensors a file holds for one target layer, and how to turn them into a weight delta."""

    name: str  # the layer's name as written in the file (without the tensor suffix)
    kind: str  # "lora", "loha", "lokr" or "full"
    tensors: dict[str, torch.Tensor]
    alpha: float | None = None

    @property
    def rank(self) -> int | None:
        t = self.tensors
        if self.kind == "lora":
            return int(t["down"].shape[0])
        if self.kind == "loha":
            return int(t["hada_w1_b"].shape[0])
        if self.kind == "lokr":
            if "lokr_w1_b" in t:
                return int(t["lokr_w1_b"].shape[0])
            if "lokr_w2_b" in t:
                return int(t["lokr_w2_b"].shape[0])
        return None

    @property
    def scale(self) -> float:
        """alpha / rank (alpha defaults to the rank, so the scale to 1)."""
        rank = self.rank
        if rank is None or self.alpha is None:
            return 1.0
        return float(self.alpha) / rank

    def _lokr_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        t = self.tensors
        w1 = tuple(t["lokr_w1"].shape) if "lokr_w1" in t else (t["lokr_w1_a"].shape[0], t["lokr_w1_b"].shape[1])
        w2 = tuple(t["lokr_w2"].shape) if "lokr_w2" in t else (t["lokr_w2_a"].shape[0], *t["lokr_w2_b"].shape[1:])
        return w1, w2

    def out_features(self) -> int:
        """Rows of the delta (the target layer's output features)."""
        t = self.tensors
        if self.kind == "lora":
            return int(t["up"].shape[0])
        if self.kind == "loha":
            return int(t["hada_w1_a"].shape[0])
        if self.kind == "full":
            return int(t["diff"].shape[0])
        w1, w2 = self._lokr_shapes()
        return int(w1[0] * w2[0])

    def numel(self) -> int:
        """Elements of the full delta (to check it fits the target weight)."""
        t = self.tensors
        if self.kind == "lora":
            kernel = t["mid"][0, 0].numel() if "mid" in t else 1
            return int(t["up"].shape[0] * t["down"][0].numel() * kernel)
        if self.kind == "loha":
            return int(t["hada_w1_a"].shape[0] * t["hada_w1_b"][0].numel())
        if self.kind == "full":
            return int(t["diff"].numel())
        w1, w2 = self._lokr_shapes()
        return int(torch.Size(w1).numel() * torch.Size(w2).numel())

    def _f32(self, role: str, device) -> torch.Tensor:
        return self.tensors[role].to(device=device, dtype=torch.float32)

    def _product(self, full: str, a: str, b: str, device) -> torch.Tensor:
        if full in self.tensors:
            return self._f32(full, device)
        left, right = self._f32(a, device), self._f32(b, device)
        return (left @ right.flatten(1)).reshape(left.shape[0], *right.shape[1:])

    def merged(self, base: torch.Tensor, multiplier: float) -> torch.Tensor:
        """A new float32 tensor ``base + multiplier * scale * delta``; ``base`` is only read.

        A plain float32 LoRA layer takes one fused ``addmm`` pass over the weight, which
        matters on CPU where memory bandwidth is what patching costs.
        """
        if base.dtype == torch.float32 and self.kind == "lora" and "mid" not in self.tensors:
            up = self._f32("up", base.device).flatten(1)
            down = self._f32("down", base.device).flatten(1)
            flat = base.reshape(base.shape[0], -1)
            return torch.addmm(flat, up, down, alpha=multiplier * self.scale).view(base.shape)
        acc = base.to(dtype=torch.float32, copy=True)
        self.add_to(acc, multiplier)
        return acc

    def add_to(self, acc: torch.Tensor, multiplier: float) -> None:
        """Add ``multiplier * scale * delta`` into ``acc`` (a float32 tensor we own, shaped as the weight)."""
        device = acc.device
        factor = multiplier * self.scale
        flat = acc.view(acc.shape[0], -1)
        if self.kind == "lora":
            up = self._f32("up", device).flatten(1)
            down = self._f32("down", device)
            if "mid" in self.tensors:  # LyCORIS Tucker: up (o,r) . mid (r,r,kh,kw) . down (r,i)
                mid = self._f32("mid", device)
                delta = torch.einsum("nmkl,on,mi->oikl", mid, up, down.flatten(1))
                flat.add_(delta.reshape(flat.shape), alpha=factor)
            else:
                flat.addmm_(up, down.flatten(1), alpha=factor)
        elif self.kind == "loha":
            w1 = self._f32("hada_w1_a", device) @ self._f32("hada_w1_b", device).flatten(1)
            w2 = self._f32("hada_w2_a", device) @ self._f32("hada_w2_b", device).flatten(1)
            flat.add_((w1 * w2).reshape(flat.shape), alpha=factor)
        elif self.kind == "lokr":
            w1 = self._product("lokr_w1", "lokr_w1_a", "lokr_w1_b", device)
            w2 = self._product("lokr_w2", "lokr_w2_a", "lokr_w2_b", device)
            if w2.dim() > w1.dim():
                w1 = w1.reshape(*w1.shape, *([1] * (w2.dim() - w1.dim())))
            flat.add_(torch.kron(w1, w2).reshape(flat.shape), alpha=factor)
        else:  # full weight difference
            flat.add_(self._f32("diff", device).reshape(flat.shape), alpha=factor)


@dataclass
class LoraFile:
    """A parsed LoRA file: its layers by file name and what could not be used."""

    path: Path
    modules: dict[str, LoraModule]
    unsupported: dict[str, int] = field(default_factory=dict)  # format name -> layer count
    metadata: dict = field(default_factory=dict)

    def describe_unsupported(self) -> str:
        return ", ".join(f"{name} ({count} layers)" for name, count in sorted(self.unsupported.items()))


# ---------------------------------------------------------------- reading
def _split_key(key: str) -> tuple[str, str] | None:
    """(layer name, role) of one tensor key, or None when the suffix is unknown."""
    match = _KOHYA_RE.match(key)
    if match:  # kohya names hold no dots, so the layer is everything before the first one
        suffix = match.group(2)
        for known, role in _SUFFIXES:
            if suffix == known:
                return match.group(1), role
        return None
    for known, role in _SUFFIXES:
        if key.endswith("." + known):
            return key[: -len(known) - 1], role
    match = re.match(r"^(.+_lora)\.(down|up)\.weight$", key)  # old diffusers: attn1.processor.to_q_lora.down.weight
    if match:
        return match[1], match[2]
    return None


def _unsupported_name(key: str) -> str:
    lowered = key.lower()
    for marker, name in _UNSUPPORTED_MARKERS:
        if marker in lowered:
            return name
    return "unrecognised keys"


def _peft_alphas(metadata: dict) -> dict[str, float]:
    """Per-component default alphas from diffusers' ``lora_adapter_metadata`` header entry."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    alphas = {}
    for key, value in data.items():
        if key.endswith(".lora_alpha") and isinstance(value, (int, float)):
            alphas[key[: -len(".lora_alpha")]] = float(value)
        elif key == "lora_alpha" and isinstance(value, (int, float)):
            alphas[""] = float(value)
    return alphas


def parse_lora_state_dict(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> LoraFile:
    """Group a LoRA state dict into layers and classify each layer's format."""
    metadata = metadata or {}
    groups: dict[str, dict[str, torch.Tensor]] = {}
    unsupported: dict[str, int] = {}
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            continue
        if key.startswith("base_model.model."):
            key = key[len("base_model.model.") :]
        split = _split_key(key)
        if split is None:
            name = _unsupported_name(key)
            unsupported[name] = unsupported.get(name, 0) + 1
            continue
        layer, role = split
        groups.setdefault(layer, {})[role] = value

    peft_alphas = _peft_alphas(metadata)
    modules: dict[str, LoraModule] = {}
    for layer, parts in groups.items():
        alpha_tensor = parts.pop("alpha", None)
        alpha = float(alpha_tensor.float().reshape(-1)[0]) if alpha_tensor is not None else None
        if alpha is None and peft_alphas:
            component = layer.split(".", 1)[0] if "." in layer else ""
            alpha = peft_alphas.get(component, peft_alphas.get(""))
        bad = sorted({_UNSUPPORTED_ROLES[r] for r in parts if r in _UNSUPPORTED_ROLES})
        if bad:
            for name in bad:
                unsupported[name] = unsupported.get(name, 0) + 1
            continue
        kind = _kind_of(parts)
        if kind is None:
            if parts:
                unsupported["incomplete layers"] = unsupported.get("incomplete layers", 0) + 1
            continue
        modules[layer] = LoraModule(layer, kind, parts, alpha)
    return LoraFile(Path(path), modules, unsupported, metadata)


def _kind_of(parts: dict) -> str | None:
    roles = set(parts)
    if {"down", "up"} <= roles:
        return "lora"
    if {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"} <= roles:
        return "loha"
    has_w1 = "lokr_w1" in roles or {"lokr_w1_a", "lokr_w1_b"} <= roles
    has_w2 = "lokr_w2" in roles or {"lokr_w2_a", "lokr_w2_b"} <= roles
    if has_w1 and has_w2:
        return "lokr"
    if "diff" in roles:
        return "full"
    return None


def read_lora_file(path: Path) -> LoraFile:
    """Parse one LoRA file (.safetensors, or .pt/.ckpt read without running code).

    Raises ``ModelLoadError`` naming the file for other suffixes, unsafe pickles
    and unreadable files.
    """
    path = Path(path)
    if path.suffix.lower() not in LORA_FILE_SUFFIXES:
        raise ModelLoadError(
            f"LoRA file {path.name} was refused: only {', '.join(LORA_FILE_SUFFIXES)} files are read"
        )
    data, metadata = read_tensor_file(path, "LoRA file")
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelLoadError(f"LoRA file {path.name} does not hold a state dict")
    return parse_lora_state_dict(path, data, metadata)


class LoraFileCache:
    """A small LRU of parsed LoRA files keyed by path, size and mtime (an edited file is re-read)."""

    def __init__(self, max_entries: int = 4):
        self.max_entries = max(1, int(max_entries))
        self._entries: OrderedDict[tuple, LoraFile] = OrderedDict()

    @staticmethod
    def key_for(path: Path) -> tuple:
        path = Path(path)
        try:
            stat = path.stat()
        except OSError as exc:
            raise ModelLoadError(f"LoRA file {path.name} cannot be read: {exc.strerror}") from None
        return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)

    def get(self, path: Path) -> tuple[tuple, LoraFile]:
        """(identity key, parsed file), reading the file only when it is not cached."""
        key = self.key_for(path)
        if key in self._entries:
            self._entries.move_to_end(key)
            return key, self._entries[key]
        parsed = read_lora_file(Path(path))
        self._entries[key] = parsed
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return key, parsed


# ---------------------------------------------------------------- names of the loaded model's layers
def sgm_unet_name(path: str, unet) -> str | None:
    """The original SGM/LDM UNet name of a diffusers UNet module path (what kohya uses for SDXL), or None."""
    config = unet.config
    layers = layers_per_block(config.layers_per_block, len(config.down_block_types))
    return ldm_unet_name(path, layers, lambda block: hasattr(unet.up_blocks[block], "attentions"))


def _normalise_dotted(path: str, component: str) -> str:
    """Old diffusers attention-processor names -> module paths."""
    path = path.replace(".processor.", ".")
    if component == "unet":
        for old, new in (("to_q_lora", "to_q"), ("to_k_lora", "to_k"), ("to_v_lora", "to_v"), ("to_out_lora", "to_out.0")):
            path = re.sub(rf"(^|\.){old}$", rf"\g<1>{new}", path)
    else:
        for old, new in (("to_q_lora", "q_proj"), ("to_k_lora", "k_proj"), ("to_v_lora", "v_proj"), ("to_out_lora", "out_proj")):
            path = re.sub(rf"(^|\.){old}$", rf"\g<1>{new}", path)
    return path


def _encoder_prefixes(count: int, family: str) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(kohya prefixes, diffusers prefixes) of each text encoder, in the loaded model's order."""
    if count >= 2:
        return [(("lora_te1_", "lora_te_"), ("text_encoder.",)), (("lora_te2_",), ("text_encoder_2.",))]
    if family == "sdxl_refiner":
        return [(("lora_te2_", "lora_te_"), ("text_encoder_2.", "text_encoder."))]
    return [(("lora_te_", "lora_te1_"), ("text_encoder.",))]


@dataclass(frozen=True)
class Target:
    """One patchable layer of the loaded model: ``component`` is "unet" or "te0", "te1"."""

    component: str
    path: str


@dataclass
class _Binding:
    """A parsed file matched against the loaded model."""

    targets: dict[Target, LoraModule]
    warnings: list[str]


class _LayerIndex:
    """Lookup from the names LoRA files use to the loaded model's Linear/Conv layers."""

    def __init__(self, unet, text_encoders, family: str):
        self.modules: dict[Target, nn.Module] = {}
        self._by_name: dict[tuple[str, str], Target] = {}  # (component, underscored name) -> target
        self._kohya: list[tuple[str, str]] = [("lora_unet_", "unet")]
        self._dotted: list[tuple[str, str]] = [("unet.", "unet")]
        if unet is not None:
            for path, module in unet.named_modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    target = Target("unet", path)
                    self.modules[target] = module
                    self._by_name[("unet", path.replace(".", "_"))] = target
                    sgm = sgm_unet_name(path, unet)
                    if sgm:
                        self._by_name.setdefault(("unet", sgm.replace(".", "_")), target)
        encoders = list(text_encoders or [])
        for index, (kohya, dotted) in enumerate(_encoder_prefixes(len(encoders), family)[: len(encoders)]):
            component = f"te{index}"
            self._kohya += [(prefix, component) for prefix in kohya]
            self._dotted += [(prefix, component) for prefix in dotted]
            for path, module in encoders[index].named_modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    target = Target(component, path)
                    self.modules[target] = module
                    # Files always say text_model.encoder...; transformers 5's CLIPTextModel
                    # has no text_model level (CLIPTextModelWithProjection still has).
                    bare = path[len("text_model.") :] if path.startswith("text_model.") else path
                    for alias in (bare, "text_model." + bare):
                        self._by_name[(component, alias.replace(".", "_"))] = target
        # Longest prefixes first: "lora_te1_" must not be read as "lora_te_" + "1_...".
        self._kohya.sort(key=lambda item: -len(item[0]))
        self._dotted.sort(key=lambda item: -len(item[0]))

    def find(self, layer_name: str) -> Target | None:
        for prefix, component in self._kohya:
            if layer_name.startswith(prefix):
                return self._by_name.get((component, layer_name[len(prefix) :]))
        for prefix, component in self._dotted:
            if layer_name.startswith(prefix):
                path = _normalise_dotted(layer_name[len(prefix) :], component)
                return self._by_name.get((component, path.replace(".", "_")))
        # Bare diffusers names (a UNet-only peft file without the "unet." prefix).
        return self._by_name.get(("unet", _normalise_dotted(layer_name, "unet").replace(".", "_")))


# ---------------------------------------------------------------- patching
class LoraPatcher:
    """Applies a list of LoRAs to one loaded model, changing only what differs from the last call.

    One patcher per loaded model (build a new one after a checkpoint switch). Base
    weights are never written: patched layers get new Parameters and unpatched ones
    get their original Parameter objects back.
    """

    def __init__(self, unet, text_encoders, family: str, cache: LoraFileCache | None = None):
        self.family = family
        self.cache = cache or LoraFileCache()
        self._index = _LayerIndex(unet, text_encoders, family)
        self._bindings: OrderedDict[tuple, _Binding] = OrderedDict()
        self._originals: dict[Target, nn.Parameter] = {}
        self._current: dict[Target, tuple] = {}  # target -> ((file key, multiplier), ...)
        self._active: list[tuple[str, float, float]] = []
        self.text_encoder_revision = 0  # bumped whenever a text encoder layer changes (for prompt caches)

    # -- public ---------------------------------------------------------------
    def apply(self, specs) -> list[str]:
        """Make the model carry exactly ``specs`` = [(name, path, te_weight, unet_weight), ...].

        Returns warnings for files that could not be (fully) applied; never raises for
        a bad LoRA file, so the job runs without it.
        """
        warnings: list[str] = []
        desired: dict[Target, list[tuple[tuple, LoraModule, float]]] = {}
        active: list[tuple[str, float, float]] = []
        for name, path, te_weight, unet_weight in specs:
            try:
                key, parsed = self.cache.get(Path(path))
            except WebUIError as exc:
                warnings.append(f"LoRA '{name}' not applied: {exc}")
                continue
            binding = self._bind(key, parsed)
            warnings += [f"LoRA '{name}' ({Path(path).name}): {text}" for text in binding.warnings]
            if not binding.targets:
                continue
            for target, module in binding.targets.items():
                multiplier = float(unet_weight if target.component == "unet" else te_weight)
                if multiplier != 0.0:
                    desired.setdefault(target, []).append((key, module, multiplier))
            active.append((name, float(te_weight), float(unet_weight)))
        self._sync(desired)
        self._active = active
        return warnings

    def clear(self) -> None:
        """Remove every LoRA: all patched layers get their original Parameter objects back."""
        self._sync({})
        self._active = []

    def active(self) -> list[tuple[str, float, float]]:
        """(name, te_weight, unet_weight) of the LoRAs applied now, for infotext."""
        return list(self._active)

    @property
    def patched_layers(self) -> int:
        return len(self._current)

    # -- internals ------------------------------------------------------------
    def _bind(self, key: tuple, parsed: LoraFile) -> _Binding:
        if key in self._bindings:
            self._bindings.move_to_end(key)
            return self._bindings[key]
        targets: dict[Target, LoraModule] = {}
        unmatched = misfit = 0
        for layer_name, module in parsed.modules.items():
            target = self._index.find(layer_name)
            if target is None:
                unmatched += 1
                continue
            weight = self._index.modules[target].weight
            if module.numel() != weight.numel() or module.out_features() != weight.shape[0]:
                misfit += 1
                continue
            targets[target] = module
        warnings = []
        total = len(parsed.modules)
        if parsed.unsupported:
            if total == 0:
                warnings.append(f"format not supported ({parsed.describe_unsupported()}); not applied")
            else:
                warnings.append(f"skipped parts in unsupported formats: {parsed.describe_unsupported()}")
        if total and not targets:
            warnings.append(f"none of its {total} layers fit this {self.family} model; not applied")
        elif unmatched or misfit:
            warnings.append(
                f"{unmatched + misfit} of {total} layers do not fit this {self.family} model and were skipped"
            )
        if not total and not parsed.unsupported:
            warnings.append("holds no LoRA layers; not applied")
        binding = _Binding(targets, warnings)
        self._bindings[key] = binding
        while len(self._bindings) > self.cache.max_entries:
            self._bindings.popitem(last=False)
        return binding

    def _sync(self, desired: dict[Target, list[tuple[tuple, LoraModule, float]]]) -> None:
        text_changed = False
        for target in list(self._current.keys() | desired.keys()):
            entries = desired.get(target, [])
            signature = tuple((key, multiplier) for key, _, multiplier in entries)
            if self._current.get(target, ()) == signature:
                continue
            module = self._index.modules[target]
            if target not in self._originals:
                self._originals[target] = module.weight
            original = self._originals[target]
            if not entries:
                module.weight = original
                del self._originals[target]
                self._current.pop(target, None)
            else:
                with torch.no_grad():
                    (_, first, multiplier), *rest = entries
                    acc = first.merged(original.detach(), multiplier)
                    for _, lora_module, multiplier in rest:
                        lora_module.add_to(acc, multiplier)
                    module.weight = nn.Parameter(acc.to(original.dtype), requires_grad=False)
                self._current[target] = signature
            text_changed |= target.component != "unet"
        if text_changed:
            self.text_encoder_revision += 1


__all__ = [
    "LORA_FILE_SUFFIXES",
    "LoraFile",
    "LoraFileCache",
    "LoraModule",
    "LoraPatcher",
    "Target",
    "parse_lora_state_dict",
    "read_lora_file",
    "sgm_unet_name",
]
