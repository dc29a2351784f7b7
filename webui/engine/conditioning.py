"""Prompt conditioning as A1111 does it, over one or two CLIP text encoders.

* The prompt is parsed with A1111's attention syntax (``(x:1.2)``, ``[x]``, ``BREAK``).
* Tokens are packed into chunks of 75 (plus start and end tokens, 77 in all);
  when a chunk fills up, the text after the last comma within 20 tokens moves to
  the next chunk; ``BREAK`` starts a new chunk. Each chunk is encoded on its own
  and the chunks are concatenated, so long prompts give ``[B, 77*k, D]``.
* Token weights multiply the encoder output, then the mean is restored (A1111's
  "Original" emphasis; the mean is taken per prompt, so batching does not change
  results).
* Layers: SD1 uses the last layer, or with clip skip ``n`` the n-th from last
  followed by the final layer norm. SD2 uses the penultimate layer with the final
  norm, which is the last layer of diffusers' 23-layer conversion, and ignores
  clip skip, as A1111 does. SDXL concatenates the penultimate layers of both
  encoders without the final norm (clip skip ignored, as A1111 does by default);
  its pooled output comes from the second encoder's first chunk.

Pad tokens follow A1111: CLIP ViT-L pads with the end token, OpenCLIP with 0.
Textual-inversion tokens added to a tokenizer are ordinary tokens here; a
multi-vector one (``name``, ``name_1``, ``name_2``...) is expanded to all its
tokens and kept within one chunk.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from webui.engine.diffusion import Conditioning  # the one conditioning type of the engine
from webui.models.placement import execution_device
from webui.prompts import parse_prompt_attention
from webui.schemas import InvalidRequest

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")

# Per family: the role of each text encoder, in the order diffusers names them
# (text_encoder, text_encoder_2). The role decides the pad token and the layer.
FAMILY_ENCODERS = {
    "sd1": ("clip_l",),
    "sd2": ("open_clip",),
    "sdxl": ("clip_l", "open_clip"),
    "sdxl_refiner": ("open_clip",),
}


@dataclass
class PromptChunk:
    """77 token ids and their weights: start token, 75 prompt tokens or padding, end token."""

    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)


def build_chunks(
    segments: list[tuple[list[list[int]] | None, float]],
    *,
    id_start: int,
    id_end: int,
    comma_id: int | None,
    backtrack: int = COMMA_BACKTRACK,
) -> tuple[list[PromptChunk], int]:
    """Pack weighted token groups into 77-token chunks (A1111's ``tokenize_line``).

    ``segments`` is a list of ``(groups, weight)`` where each group is one token or
    a multi-vector embedding's tokens, and ``groups`` is None for ``BREAK``.
    Returns the chunks and the token count A1111's UI shows.
    """
    chunks: list[PromptChunk] = []
    chunk = PromptChunk()
    token_count = 0
    last_comma = -1

    def close_chunk(is_last: bool = False) -> None:
        nonlocal chunk, token_count, last_comma
        token_count += len(chunk.tokens) if is_last else CHUNK_LENGTH
        missing = CHUNK_LENGTH - len(chunk.tokens)
        chunk.tokens += [id_end] * missing
        chunk.multipliers += [1.0] * missing
        chunk.tokens = [id_start, *chunk.tokens, id_end]
        chunk.multipliers = [1.0, *chunk.multipliers, 1.0]
        chunks.append(chunk)
        chunk = PromptChunk()
        last_comma = -1

    for groups, weight in segments:
        if groups is None:
            close_chunk()
            continue
        for group in groups:
            token = group[0]
            if token == comma_id:
                last_comma = len(chunk.tokens)
            elif (
                backtrack
                and len(chunk.tokens) == CHUNK_LENGTH
                and last_comma != -1
                and len(chunk.tokens) - last_comma <= backtrack
            ):
                # Move the words after the last comma to the next chunk.
                cut = last_comma + 1
                moved_tokens, moved_weights = chunk.tokens[cut:], chunk.multipliers[cut:]
                chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
                close_chunk()
                chunk.tokens, chunk.multipliers = moved_tokens, moved_weights
            if len(chunk.tokens) == CHUNK_LENGTH:
                close_chunk()
            if len(group) > 1 and len(chunk.tokens) + len(group) > CHUNK_LENGTH:
                close_chunk()  # keep an embedding's vectors together
            chunk.tokens += group
            chunk.multipliers += [weight] * len(group)
    if chunk.tokens or not chunks:
        close_chunk(is_last=True)
    return chunks, token_count


def empty_chunk(id_start: int, id_end: int) -> PromptChunk:
    """The chunk used to pad shorter prompts (an empty prompt's tokens)."""
    return PromptChunk([id_start] + [id_end] * (CHUNK_LENGTH + 1), [1.0] * (CHUNK_LENGTH + 2))


def apply_emphasis(z: torch.Tensor, multipliers: torch.Tensor, mode: str = "Original") -> torch.Tensor:
    """Weight token embeddings ``z`` ``[B, T, D]`` by ``multipliers`` ``[B, T]``.

    "Original" rescales each prompt back to its previous mean; "No norm" does
    not; "Ignore"/"None" leave ``z`` as it is. All-1 weights leave ``z`` untouched.
    """
    if mode in ("Ignore", "None") or bool((multipliers == 1).all()):
        return z
    weighted = z * multipliers.to(z.dtype).unsqueeze(-1)
    if mode == "No norm":
        return weighted
    original_mean = z.mean(dim=(1, 2), keepdim=True)
    new_mean = weighted.mean(dim=(1, 2), keepdim=True)
    safe = torch.where(new_mean == 0, torch.ones_like(new_mean), new_mean)
    return weighted * (original_mean / safe)


def _final_norm(model):
    return getattr(model, "text_model", model).final_layer_norm


def _num_layers(model) -> int:
    return int(model.config.num_hidden_layers)


class PromptEncoder:
    """A1111-style conditioning over the text encoder(s) of one model family.

    ``tokenizers`` and ``text_encoders`` are in diffusers' order: one CLIP ViT-L
    (sd1), one OpenCLIP (sd2, sdxl_refiner) or both (sdxl: ViT-L, then bigG with
    projection). ``emphasis`` is one of A1111's modes ("Original" by default).
    """

    def __init__(self, tokenizers: list, text_encoders: list, *, family: str, emphasis: str = "Original"):
        if family not in FAMILY_ENCODERS:
            raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILY_ENCODERS)}")
        roles = FAMILY_ENCODERS[family]
        if len(tokenizers) != len(roles) or len(text_encoders) != len(roles):
            raise ValueError(f"family {family} needs {len(roles)} tokenizer(s) and text encoder(s)")
        if emphasis not in EMPHASIS_MODES:
            raise ValueError(f"unknown emphasis mode {emphasis!r}")
        self.family = family
        self.roles = roles
        self.tokenizers = list(tokenizers)
        self.text_encoders = list(text_encoders)
        self.emphasis = emphasis

    # ---------------------------------------------------------------- tokens
    def _ids(self, index: int) -> tuple[int, int, int, int | None]:
        tokenizer = self.tokenizers[index]
        id_start, id_end = tokenizer.bos_token_id, tokenizer.eos_token_id
        id_pad = id_end if self.roles[index] == "clip_l" else 0
        comma = tokenizer.convert_tokens_to_ids(",</w>")
        if comma == tokenizer.unk_token_id:
            comma = None
        return id_start, id_end, id_pad, comma

    def _groups(self, ids: list[int], added: dict[str, int], added_by_id: dict[int, str]) -> list[list[int]]:
        """Token groups: a multi-vector embedding ``name`` (with ``name_1``...) becomes one group.

        Text already expanded to ``name name_1 name_2`` (as the embedding loader's
        ``expand_prompt`` does) gives the same single group, not a doubled one.
        """
        groups, i = [], 0
        while i < len(ids):
            token = ids[i]
            name = added_by_id.get(token)
            following = []
            if name is not None:
                extra = 1
                while f"{name}_{extra}" in added:
                    following.append(added[f"{name}_{extra}"])
                    extra += 1
            if len(following) >= CHUNK_LENGTH:
                following = []
            if following and ids[i + 1 : i + 1 + len(following)] == following:
                i += len(following)  # already spelled out in the text
            groups.append([token, *following])
            i += 1
        return groups

    def tokenize(self, text: str, encoder_index: int = 0) -> tuple[list[PromptChunk], int]:
        """The chunks of one prompt for one encoder, and A1111's token count."""
        tokenizer = self.tokenizers[encoder_index]
        id_start, id_end, _, comma = self._ids(encoder_index)
        if self.emphasis == "None":
            parsed = [[text, 1.0]]
        else:
            parsed = parse_prompt_attention(text)
        added = dict(tokenizer.get_added_vocab())
        added_by_id = {i: t for t, i in added.items() if i not in (id_start, id_end) and t[:2] != "<|"}
        texts = [piece for piece, _ in parsed]
        encoded = tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]
        segments = []
        for ids, (piece, weight) in zip(encoded, parsed):
            if piece == "BREAK" and weight == -1:
                segments.append((None, -1.0))
            else:
                segments.append((self._groups(list(ids), added, added_by_id), float(weight)))
        return build_chunks(segments, id_start=id_start, id_end=id_end, comma_id=comma)

    def token_count(self, text: str) -> tuple[int, int]:
        """``(tokens used, tokens available before another chunk)`` as A1111's prompt counter shows."""
        _, count = self.tokenize(text, 0)
        return count, math.ceil(max(count, 1) / CHUNK_LENGTH) * CHUNK_LENGTH

    def chunk_count(self, texts: list[str]) -> int:
        """How many 77-token chunks the longest of ``texts`` needs (over all encoders)."""
        counts = [len(self.tokenize(text, i)[0]) for text in texts for i in range(len(self.tokenizers))]
        return max(counts, default=1)

    # ---------------------------------------------------------------- encoding
    def _check_clip_skip(self, clip_skip: int) -> None:
        if not isinstance(clip_skip, int) or clip_skip < 1:
            raise InvalidRequest("clip_skip must be a whole number of at least 1", field="clip_skip")
        if self.family == "sd1":
            layers = _num_layers(self.text_encoders[0])
            if clip_skip > layers:
                raise InvalidRequest(f"clip_skip must be at most {layers} for this model", field="clip_skip")

    def _hidden(self, index: int, tokens: torch.Tensor, clip_skip: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One encoder's token embeddings for a ``[B, 77]`` batch, and its pooled output if it has one."""
        model = self.text_encoders[index]
        out = model(input_ids=tokens, output_hidden_states=True)
        role = self.roles[index]
        if self.family == "sd1":
            z = out.last_hidden_state if clip_skip <= 1 else _final_norm(model)(out.hidden_states[-clip_skip])
        elif self.family == "sd2":
            # Full 24-layer OpenCLIP weights: penultimate layer + final norm; diffusers' 23-layer copy: last layer.
            z = _final_norm(model)(out.hidden_states[-2]) if _num_layers(model) >= 24 else out.last_hidden_state
        else:
            z = out.hidden_states[-2]
        pooled = None
        projection = getattr(model, "text_projection", None)
        if role == "open_clip" and self.family in ("sdxl", "sdxl_refiner") and projection is not None:
            # Pool at the first end token ourselves: configs with eos_token_id=2 pick the wrong
            # position once textual-inversion tokens (ids above the end token) are present.
            end = self.tokenizers[index].eos_token_id
            position = (tokens == end).int().argmax(dim=-1)
            rows = torch.arange(tokens.shape[0], device=tokens.device)
            pooled = projection(out.last_hidden_state[rows, position])
        return z, pooled

    @torch.no_grad()
    def encode(self, texts: list[str], clip_skip: int = 1, min_chunks: int = 1, *, negative: bool = False) -> Conditioning:
        """Encode a batch of prompts; every prompt gets ``max(min_chunks, longest)`` chunks.

        With ``negative=True`` on SDXL, a batch of empty negative prompts gives
        zero embeddings, as A1111 and diffusers do.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise ValueError("encode needs at least one text")
        self._check_clip_skip(clip_skip)
        per_encoder = [[self.tokenize(text, i)[0] for text in texts] for i in range(len(self.tokenizers))]
        total = max([min_chunks] + [len(chunks) for batch in per_encoder for chunks in batch])

        outputs, pooled = [], None
        for index, batch in enumerate(per_encoder):
            id_start, id_end, id_pad, _ = self._ids(index)
            model = self.text_encoders[index]
            device = execution_device(model)
            pieces = []
            for position in range(total):
                rows = [chunks[position] if position < len(chunks) else empty_chunk(id_start, id_end) for chunks in batch]
                tokens = torch.tensor([row.tokens for row in rows], dtype=torch.long, device=device)
                if id_pad != id_end:
                    for row_index, row in enumerate(rows):
                        first_end = row.tokens.index(id_end)
                        tokens[row_index, first_end + 1 :] = id_pad
                z, chunk_pooled = self._hidden(index, tokens, clip_skip)
                multipliers = torch.tensor([row.multipliers for row in rows], device=z.device)
                pieces.append(apply_emphasis(z, multipliers, self.emphasis))
                if position == 0 and chunk_pooled is not None:
                    pooled = chunk_pooled
            outputs.append(torch.cat(pieces, dim=1))

        embeds = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
        if negative and self.family in ("sdxl", "sdxl_refiner") and all(text == "" for text in texts):
            embeds = torch.zeros_like(embeds)
            pooled = None if pooled is None else torch.zeros_like(pooled)
        return Conditioning(embeds, pooled)


__all__ = [
    "CHUNK_LENGTH",
    "Conditioning",
    "FAMILY_ENCODERS",
    "PromptChunk",
    "PromptEncoder",
    "apply_emphasis",
    "build_chunks",
    "empty_chunk",
]
