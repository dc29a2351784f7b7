"""img2img scripts: SD upscale (upscale, then img2img tile by tile), Outpainting mk2 and Poor man's outpainting."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from webui.addons.base import Param
from webui.infotext import quote_value
from webui.schemas import MAX_SIDE, GenerationRequest, GenerationResult, InvalidRequest
from webui.scripts.base import ScriptSpec
from webui.scripts.xyz_axes import copy_request

DIRECTIONS = ("left", "right", "up", "down")
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")


def _append_fields(infotext: str, fields: dict) -> str:
    extra = ", ".join(f"{key}: {quote_value(value)}" for key, value in fields.items())
    return f"{infotext}, {extra}" if infotext else extra


# ---------------------------------------------------------------- tiles
def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of ``tile`` px start along a side so that neighbours overlap by at least ``overlap``.

    >>> tile_starts(128, 64, 16)
    [0, 32, 64]
    >>> tile_starts(64, 64, 16)
    [0]
    """
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / max(1, tile - overlap))
    count = max(2, count)
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def _ramp(size: int, overlap: int) -> np.ndarray:
    """Blend weights along one side of a tile: rising over ``overlap`` px at both ends, never zero."""
    position = np.arange(size, dtype=np.float32)
    ramp = np.minimum(position + 1, size - position) / (overlap + 1)
    return np.clip(ramp, 1e-3, 1.0)


def blend_tiles(size: tuple[int, int], tiles: list[tuple[int, int, Image.Image]], overlap: int) -> Image.Image:
    """One image of ``size`` from ``(x, y, tile)``; overlapping parts fade linearly into each other."""
    width, height = size
    total = np.zeros((height, width, 3), dtype=np.float32)
    weight = np.zeros((height, width, 1), dtype=np.float32)
    for x, y, tile in tiles:
        pixels = np.asarray(tile.convert("RGB"), dtype=np.float32)
        th, tw = pixels.shape[:2]
        window = (_ramp(th, overlap)[:, None] * _ramp(tw, overlap)[None, :])[..., None]
        total[y:y + th, x:x + tw] += pixels * window
        weight[y:y + th, x:x + tw] += window
    return Image.fromarray(np.clip(total / np.maximum(weight, 1e-6) + 0.5, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------- SD upscale
class SDUpscale(ScriptSpec):
    """Upscale the init image, then redraw it tile by tile (tiles of the request's size) with img2img."""

    key = "sd_upscale"
    title = "SD upscale"
    modes = ("img2img",)
    params = (
        Param("info", "Will upscale the image by the selected scale factor; use width and height sliders to set "
                      "tile size", ""),
        Param("overlap", "Tile overlap", 64, 0, 256, step=16),
        Param("upscaler_index", "Upscaler", "None"),
        Param("scale_factor", "Scale Factor", 2.0, 1.0, 4.0, step=0.05),
    )

    @classmethod
    def prepare(cls, values: dict, request: GenerationRequest, env) -> dict:
        values = dict(values)
        names = list(env.upscalers.names()) if getattr(env, "upscalers", None) is not None \
            else ["None", "Lanczos", "Nearest"]
        choice = str(values["upscaler_index"]).strip()
        if choice.isdigit():  # A1111 sends the index into its upscaler list
            if int(choice) >= len(names):
                raise InvalidRequest(f"script_args: upscaler index {choice} is out of range 0..{len(names) - 1}",
                                     field="script_args")
            choice = names[int(choice)]
        match = next((n for n in names if n.lower() == choice.lower()), None)
        if match is None:
            raise InvalidRequest(f"script_args: no upscaler named {choice!r}; known: {', '.join(names)}",
                                 field="script_args")
        values["upscaler_index"] = match
        width, height = cls.output_size(values, request)
        if max(width, height) > MAX_SIDE or width * height > env.max_pixels:
            raise InvalidRequest(f"script_args: the upscaled image would be {width}x{height}, over this server's "
                                 "limit", field="script_args")
        return values

    @staticmethod
    def output_size(values: dict, request: GenerationRequest) -> tuple[int, int]:
        image = request.init_image
        if values["upscaler_index"] == "None":  # A1111 redraws the image at its own size then
            return image.size
        return round(image.width * values["scale_factor"]), round(image.height * values["scale_factor"])

    @classmethod
    def _tiles(cls, values: dict, request: GenerationRequest) -> tuple[list[int], list[int], int, int]:
        width, height = cls.output_size(values, request)
        tile_w, tile_h = min(request.width, width), min(request.height, height)
        overlap = values["overlap"]
        return tile_starts(width, tile_w, overlap), tile_starts(height, tile_h, overlap), tile_w, tile_h

    @classmethod
    def image_count(cls, values: dict, request: GenerationRequest) -> int:
        xs, ys, _, _ = cls._tiles(values, request)
        return len(xs) * len(ys) * request.n_iter

    @classmethod
    def run(cls, values: dict, request: GenerationRequest, ctx) -> GenerationResult:
        name = values["upscaler_index"]
        source = request.init_image.convert("RGB")
        image = source if name == "None" else ctx.upscale(source, name, values["scale_factor"])
        image = image.resize(cls.output_size(values, request), Image.LANCZOS) \
            if image.size != cls.output_size(values, request) else image
        xs, ys, tile_w, tile_h = cls._tiles(values, request)
        seed = request.seed if request.seed is not None and request.seed >= 0 else None
        finished = GenerationResult()
        for n in range(request.n_iter):
            tiles, first_info = [], ""
            tile_seed = None if seed is None else seed + n
            for y in ys:
                for x in xs:
                    cell = copy_request(request)
                    cell.init_image = image.crop((x, y, x + tile_w, y + tile_h))
                    cell.width, cell.height, cell.batch_size, cell.n_iter = tile_w, tile_h, 1, 1
                    cell.seed = -1 if tile_seed is None else tile_seed
                    cell.save_images = False  # A1111 saves the combined image, not the tiles
                    made = ctx.generate(cell)
                    if not made.images:
                        continue
                    out = made.images[0]
                    if out.size != (tile_w, tile_h):
                        out = out.resize((tile_w, tile_h), Image.LANCZOS)
                    tiles.append((x, y, out))
                    first_info = first_info or made.infotexts[0]
                    if tile_seed is None:
                        tile_seed = made.seeds[0]
                    tile_seed += 1
            combined = blend_tiles(image.size, tiles, values["overlap"])
            info = _append_fields(first_info, {"SD upscale overlap": values["overlap"],
                                               "SD upscale upscaler": name})
            finished.images.append(combined)
            finished.infotexts.append(info)
            finished.seeds.append(tile_seed if seed is None else seed + n)
            finished.prompts.append(request.prompt)
            finished.negative_prompts.append(request.negative_prompt)
            path = ctx.save_sample(combined, info, seed=finished.seeds[-1], prompt=request.prompt)
            if path:
                finished.saved_paths.append(path)
        finished.warnings, finished.parameters = list(ctx.made.warnings), dict(ctx.made.parameters)
        return finished


# ---------------------------------------------------------------- outpainting
def _expansion(directions: list[str], pixels: int) -> tuple[int, int, int, int]:
    return tuple(pixels if d in directions else 0 for d in DIRECTIONS)  # left, right, up, down


def _check_directions(values: dict) -> None:
    if not values["direction"]:
        raise InvalidRequest("script_args: choose at least one outpainting direction", field="script_args")


def _border_mask(size, box) -> Image.Image:
    """White (to redraw) everywhere except ``box`` (left, top, right, bottom): the part of the image kept."""
    mask = Image.new("L", size, 255)
    ImageDraw.Draw(mask).rectangle(box, fill=0)
    return mask


class PoorMansOutpainting(ScriptSpec):
    """Extend the canvas by ``pixels`` on the chosen sides and inpaint the new border (one pass)."""

    key = "poor_mans_outpainting"
    title = "Poor man's outpainting"
    modes = ("img2img",)
    params = (
        Param("pixels", "Pixels to expand", 128, 8, 256, step=8),
        Param("mask_blur", "Mask blur", 4, 0, 64, step=1),
        Param("inpainting_fill", "Masked content", 0, 0, 3, step=1),
        Param("direction", "Outpainting direction", list(DIRECTIONS), choices=DIRECTIONS),
    )

    @classmethod
    def prepare(cls, values: dict, request: GenerationRequest, env) -> dict:
        _check_directions(values)
        return values

    @staticmethod
    def output_size(values: dict, request: GenerationRequest) -> tuple[int, int]:
        left, right, up, down = _expansion(values["direction"], values["pixels"])
        return request.init_image.width + left + right, request.init_image.height + up + down

    @classmethod
    def run(cls, values: dict, request: GenerationRequest, ctx) -> GenerationResult:
        left, right, up, down = _expansion(values["direction"], values["pixels"])
        source = request.init_image.convert("RGB")
        size = cls.output_size(values, request)
        canvas = Image.new("RGB", size)
        canvas.paste(source, (left, up))
        blur2 = values["mask_blur"] * 2
        box = (left + (blur2 if left else 0), up + (blur2 if up else 0),
               size[0] - right - (blur2 if right else 0) - 1, size[1] - down - (blur2 if down else 0) - 1)
        cell = copy_request(request)
        cell.init_image, cell.mask = canvas, _border_mask(size, box)
        cell.mask_blur, cell.inpainting_fill, cell.inpaint_full_res = values["mask_blur"], \
            values["inpainting_fill"], False
        cell.width, cell.height = size
        made = ctx.generate(cell)
        return _exact_size(made, size)


def _exact_size(result: GenerationResult, size) -> GenerationResult:
    """The engine works in multiples of 8 px: give the images back at the size the script promised."""
    result.images = [im if im.size == tuple(size) else im.resize(size, Image.LANCZOS) for im in result.images]
    return result


def matched_noise(size, reference: Image.Image, color_variation: float, rng: np.random.Generator) -> Image.Image:
    """Noise with the colours of ``reference`` (its per-channel mean and spread), ``color_variation`` of it per pixel."""
    pixels = np.asarray(reference.convert("RGB"), dtype=np.float32)
    mean, spread = pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1))
    width, height = size
    shared = rng.standard_normal((height, width, 1)).astype(np.float32)
    own = rng.standard_normal((height, width, 3)).astype(np.float32)
    noise = mean + spread * ((1 - color_variation) * shared + color_variation * own)
    return Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))


class Outpainting(ScriptSpec):
    """Outpainting mk2: the canvas grows to a multiple of 64 px; new sides start as colour-matched noise."""

    key = "outpainting_mk2"
    title = "Outpainting mk2"
    modes = ("img2img",)
    params = (
        Param("info", "Recommended settings: Sampling Steps: 80-100, Sampler: Euler a, Denoising strength: 0.8", ""),
        Param("pixels", "Pixels to expand", 128, 8, 256, step=8),
        Param("mask_blur", "Mask blur", 8, 0, 64, step=1),
        Param("direction", "Outpainting direction", list(DIRECTIONS), choices=DIRECTIONS),
        Param("noise_q", "Fall-off exponent (lower=higher detail)", 1.0, 0.0, 4.0, step=0.01),
        Param("color_variation", "Color variation", 0.05, 0.0, 1.0, step=0.01),
    )

    @classmethod
    def prepare(cls, values: dict, request: GenerationRequest, env) -> dict:
        _check_directions(values)
        return values

    @staticmethod
    def sides(values: dict, request: GenerationRequest) -> tuple[int, int, int, int, int, int]:
        """``(left, right, up, down, width, height)``: the new size rounded up to 64 px, shared between sides."""
        left, right, up, down = _expansion(values["direction"], values["pixels"])
        image = request.init_image
        target_w = math.ceil((image.width + left + right) / 64) * 64
        target_h = math.ceil((image.height + up + down) / 64) * 64
        if left:
            left = left * (target_w - image.width) // (left + right)
        if right:
            right = target_w - image.width - left
        if up:
            up = up * (target_h - image.height) // (up + down)
        if down:
            down = target_h - image.height - up
        return left, right, up, down, image.width + left + right, image.height + up + down

    @classmethod
    def image_count(cls, values: dict, request: GenerationRequest) -> int:
        left, right, up, down, _, _ = cls.sides(values, request)
        passes = int(bool(left or right)) + int(bool(up or down))
        return max(1, passes) * request.batch_size * request.n_iter

    @classmethod
    def _expand(cls, image: Image.Image, sides, values, request, ctx, rng) -> list[GenerationResult]:
        left, right, up, down = sides
        size = (image.width + left + right, image.height + up + down)
        canvas = matched_noise(size, image, values["color_variation"], rng)
        canvas.paste(image, (left, up))
        blur = values["mask_blur"]
        keep = (left + (blur // 2 if left else 0), up + (blur // 2 if up else 0),
                left + image.width - (blur // 2 if right else 0) - 1, up + image.height - (blur // 2 if down else 0) - 1)
        cell = copy_request(request)
        cell.init_image, cell.mask = canvas, _border_mask(size, keep)
        cell.mask_blur, cell.inpainting_fill, cell.inpaint_full_res = blur, 1, False
        cell.width, cell.height = size
        return _exact_size(ctx.generate(cell), size)

    @classmethod
    def run(cls, values: dict, request: GenerationRequest, ctx) -> GenerationResult:
        left, right, up, down, width, height = cls.sides(values, request)
        rng = np.random.default_rng(request.seed if request.seed is not None and request.seed >= 0 else None)
        image = request.init_image.convert("RGB")
        staged = copy_request(request)
        made = None
        if left or right:
            made = cls._expand(image, (left, right, 0, 0), values, staged, ctx, rng)
            if not made.images:
                return ctx.made
            image = made.images[0]
            staged.batch_size, staged.n_iter = 1, 1  # the second pass grows the first pass's image
        if up or down:
            made = cls._expand(image, (0, 0, up, down), values, staged, ctx, rng)
        result = made if made is not None else ctx.made
        result.warnings = list(ctx.made.warnings)
        if values["noise_q"] != 1.0:
            result.warnings.append("Outpainting mk2: noise_q (fall-off exponent) is not used by this server's "
                                   "colour-matched noise; ignored")
        return result
