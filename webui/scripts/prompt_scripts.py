"""Prompt matrix, Prompts from file or textbox, and Loopback, as A1111's scripts of those titles."""
from __future__ import annotations

import math
import random
import shlex

from webui.addons.base import Param
from webui.schemas import MAX_BATCH_SIZE, MAX_N_ITER, MAX_SIDE, MAX_STEPS, GenerationRequest, GenerationResult, \
    InvalidRequest, NotFound
from webui.scripts.base import ScriptSpec
from webui.scripts.grids import draw_legends, grid_of
from webui.scripts.xyz_axes import copy_request

MAX_PROMPT_LINES = 1000


def _fixed_seed(seed: int | None) -> int:
    return seed if seed is not None and seed >= 0 else random.randrange(4294967294)


def _with_grid(result: GenerationResult, grid, info: str) -> GenerationResult:
    """``result`` with ``grid`` first among the images, as A1111 returns a script's grid."""
    result.parameters = {**result.parameters, "index_of_first_image": 1}
    result.images.insert(0, grid)
    result.infotexts.insert(0, info)
    for name in ("seeds", "subseeds", "prompts", "negative_prompts"):
        records = getattr(result, name)
        if records:
            records.insert(0, records[0])
    return result


# ---------------------------------------------------------------- Prompt matrix
class PromptMatrix(ScriptSpec):
    """``base|a|b`` makes every combination of the ``|`` parts: base, base+a, base+b, base+a+b."""

    key = "prompt_matrix"
    title = "Prompt matrix"
    params = (
        Param("put_at_start", "Put variable parts at start of prompt", False),
        Param("different_seeds", "Use different seed for each picture", False),
        Param("prompt_type", "Select prompt", "positive", choices=("positive", "negative")),
        Param("variations_delimiter", "Select joining char", "comma", choices=("comma", "space")),
        Param("margin_size", "Grid margins (px)", 0, 0, 500, step=2),
    )

    @staticmethod
    def _parts(values: dict, request: GenerationRequest) -> list[str]:
        text = request.prompt if values["prompt_type"] == "positive" else request.negative_prompt
        return text.split("|")

    @classmethod
    def prepare(cls, values: dict, request: GenerationRequest, env) -> dict:
        options = len(cls._parts(values, request)) - 1
        if options > 8:
            raise InvalidRequest(f"script_args: a prompt matrix of {options} parts makes {2 ** options} images; "
                                 "at most 8 parts", field="script_args")
        return values

    @classmethod
    def combinations(cls, values: dict, request: GenerationRequest) -> list[str]:
        """Every prompt of the matrix in A1111's order (bit i of the index selects part i)."""
        base, *options = [part.strip() for part in cls._parts(values, request)]
        joiner = ", " if values["variations_delimiter"] == "comma" else " "
        prompts = []
        for index in range(2 ** len(options)):
            chosen = [text for bit, text in enumerate(options) if index & (1 << bit)]
            pieces = [*chosen, base] if values["put_at_start"] else [base, *chosen]
            prompts.append(joiner.join(p for p in pieces if p))
        return prompts

    @classmethod
    def image_count(cls, values: dict, request: GenerationRequest) -> int:
        return len(cls.combinations(values, request))  # one image per combination, as A1111

    @classmethod
    def run(cls, values: dict, request: GenerationRequest, ctx) -> GenerationResult:
        prompts = cls.combinations(values, request)
        seed = _fixed_seed(request.seed)
        firsts = []
        for index, prompt in enumerate(prompts):
            cell = copy_request(request)
            cell.seed = seed + index if values["different_seeds"] else seed
            cell.batch_size = cell.n_iter = 1
            if values["prompt_type"] == "positive":
                cell.prompt = prompt
            else:
                cell.negative_prompt = prompt
            made = ctx.generate(cell)
            firsts.append(made.images[0] if made.images else None)
        result = ctx.made
        if not any(firsts):
            return result
        options = [part.strip() for part in cls._parts(values, request)][1:]
        rows = 1 << (len(options) // 2)
        cols = math.ceil(len(prompts) / rows)
        cells = [image for image in firsts if image is not None]
        grid = grid_of(cells, rows)
        width, height = cells[0].size
        # Column labels name the low bits' parts, row labels the high bits' (A1111's prompt matrix legend).
        col_bits, row_bits = int(math.log2(cols)), len(options) - int(math.log2(cols))
        columns = [", ".join(f"{'+' if c & (1 << b) else '-'}{options[b]}" for b in range(col_bits))
                   for c in range(cols)]
        row_texts = [", ".join(f"{'+' if r & (1 << b) else '-'}{options[col_bits + b]}" for b in range(row_bits))
                     for r in range(rows)]
        grid = draw_legends(grid, width, height, columns, row_texts, values["margin_size"])
        info = result.infotexts[0]
        ctx.save_grid(grid, info, basename="prompt_matrix", seed=seed, prompt=request.prompt)
        return _with_grid(result, grid, info)


# ---------------------------------------------------------------- Prompts from file or textbox
# A1111's ``--name value`` line options and their types.
LINE_OPTIONS = {
    "sd_model": str, "outpath_samples": str, "outpath_grids": str, "prompt_for_display": str, "prompt": str,
    "negative_prompt": str, "styles": list, "seed": int, "subseed_strength": float, "subseed": int,
    "seed_resize_from_h": int, "seed_resize_from_w": int, "sampler_index": int, "sampler_name": str,
    "batch_size": int, "n_iter": int, "steps": int, "cfg_scale": float, "width": int, "height": int,
    "restore_faces": bool, "tiling": bool, "do_not_save_samples": bool, "do_not_save_grid": bool,
}
IGNORED_LINE_OPTIONS = ("outpath_samples", "outpath_grids", "prompt_for_display", "sampler_index", "tiling")
_LIMITS = {"steps": (1, MAX_STEPS), "batch_size": (1, MAX_BATCH_SIZE), "n_iter": (1, MAX_N_ITER),
           "width": (16, MAX_SIDE), "height": (16, MAX_SIDE)}


def parse_prompt_line(line: str, number: int) -> dict:
    """One line: a plain prompt, or A1111's ``--prompt "a cat" --steps 10 ...`` options, as typed values.

    >>> parse_prompt_line('--prompt "a red circle" --steps 4 --styles a b', 1)
    {'prompt': 'a red circle', 'steps': 4, 'styles': ['a', 'b']}
    >>> parse_prompt_line('just a prompt', 1)
    {'prompt': 'just a prompt'}
    """
    if not line.startswith("--"):
        return {"prompt": line}
    where = f"script_args: line {number}"
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise InvalidRequest(f"{where}: {exc}", field="script_args") from None
    parsed: dict = {}
    pos = 0
    while pos < len(tokens):
        token = tokens[pos]
        if not token.startswith("--") or token[2:] not in LINE_OPTIONS:
            raise InvalidRequest(f"{where}: unknown option {token!r}", field="script_args")
        name, kind = token[2:], LINE_OPTIONS[token[2:]]
        args = []
        pos += 1
        while pos < len(tokens) and not tokens[pos].startswith("--"):
            args.append(tokens[pos])
            pos += 1
        try:
            if kind is bool:
                value = args[0].lower() in ("true", "1", "yes") if args else True
            elif kind is list:
                value = args
            else:
                value = kind(" ".join(args))
        except (ValueError, IndexError):
            raise InvalidRequest(f"{where}: --{name} needs a {kind.__name__}", field="script_args") from None
        if name in _LIMITS and not _LIMITS[name][0] <= value <= _LIMITS[name][1]:
            raise InvalidRequest(f"{where}: --{name} must be from {_LIMITS[name][0]} to {_LIMITS[name][1]}",
                                 field="script_args")
        parsed[name] = value
    return parsed


class PromptsFromFile(ScriptSpec):
    """One run per line of the text: a prompt, or ``--prompt ... --steps ...`` options for that line."""

    key = "prompts_from_file"
    title = "Prompts from file or textbox"
    params = (
        Param("checkbox_iterate", "Iterate seed every line", False),
        Param("checkbox_iterate_batch", "Use same random seed for all lines", False),
        Param("prompt_position", "Insert prompts at the", "start", choices=("start", "end")),
        Param("prompt_txt", "List of prompt inputs", ""),
    )

    @classmethod
    def lines(cls, values: dict) -> list[dict]:
        texts = [line.strip() for line in values["prompt_txt"].splitlines()]
        jobs = [parse_prompt_line(text, number) for number, text in enumerate(texts, 1) if text]
        if len(jobs) > MAX_PROMPT_LINES:
            raise InvalidRequest(f"script_args: at most {MAX_PROMPT_LINES} lines", field="script_args")
        return jobs

    @classmethod
    def prepare(cls, values: dict, request: GenerationRequest, env) -> dict:
        jobs = cls.lines(values)
        if not jobs:
            raise InvalidRequest("script_args: prompt_txt has no prompt lines", field="script_args")
        for job in jobs:
            if "sd_model" in job:
                try:
                    env.catalog.find_checkpoint(job["sd_model"])
                except NotFound:
                    raise InvalidRequest(f"script_args: no checkpoint named {job['sd_model']!r}",
                                         field="script_args") from None
        return values

    @classmethod
    def image_count(cls, values: dict, request: GenerationRequest) -> int:
        return sum(job.get("batch_size", request.batch_size) * job.get("n_iter", request.n_iter)
                   for job in cls.lines(values))

    @classmethod
    def run(cls, values: dict, request: GenerationRequest, ctx) -> GenerationResult:
        seed = request.seed
        if values["checkbox_iterate"] or values["checkbox_iterate_batch"]:
            seed = _fixed_seed(seed)
        for job in cls.lines(values):
            cell = copy_request(request)
            for name, value in job.items():
                if name in IGNORED_LINE_OPTIONS:
                    ctx.made.warnings.append(f"Prompts from file: --{name} is not supported here; ignored")
                elif name == "prompt":
                    joined = [value, request.prompt] if values["prompt_position"] == "start" \
                        else [request.prompt, value]
                    cell.prompt = " ".join(p for p in joined if p)
                elif name == "sd_model":
                    cell.checkpoint = value
                elif name == "do_not_save_samples":
                    cell.save_images = cell.save_images and not value
                else:
                    setattr(cell, name, value)
            if "seed" not in job:
                cell.seed = seed
            ctx.generate(cell)
            if values["checkbox_iterate"] and "seed" not in job:
                seed += cell.batch_size * cell.n_iter
        return ctx.made


# ---------------------------------------------------------------- Loopback
class Loopback(ScriptSpec):
    """img2img fed its own output ``loops`` times, denoising strength moving to a final value along a curve."""

    key = "loopback"
    title = "Loopback"
    modes = ("img2img", "inpaint")
    params = (
        Param("loops", "Loops", 4, 1, 32, step=1),
        Param("final_denoising_strength", "Final denoising strength", 0.5, 0.0, 1.0, step=0.01),
        Param("denoising_curve", "Denoising strength curve", "Linear", choices=("Aggressive", "Linear", "Lazy")),
        Param("append_interrogation", "Append interrogated prompt at each iteration", "None",
              choices=("None", "CLIP", "DeepBooru")),
    )

    @classmethod
    def prepare(cls, values: dict, request: GenerationRequest, env) -> dict:
        if values["append_interrogation"] != "None":
            raise InvalidRequest("script_args: append_interrogation needs an interrogator (CLIP, DeepBooru), "
                                 "which this server does not have; use None", field="script_args")
        return values

    @classmethod
    def image_count(cls, values: dict, request: GenerationRequest) -> int:
        return values["loops"] * request.batch_size * request.n_iter

    @staticmethod
    def strength(values: dict, initial: float, loop: int) -> float:
        """Denoising strength of loop ``loop`` (0-based): from ``initial`` to the final one along the curve."""
        loops = values["loops"]
        if loops == 1:
            return initial
        progress = loop / (loops - 1)
        curve = values["denoising_curve"]
        if curve == "Aggressive":
            shape = math.sin(progress * math.pi * 0.5)
        elif curve == "Lazy":
            shape = 1 - math.cos(progress * math.pi * 0.5)
        else:
            shape = progress
        return initial + (values["final_denoising_strength"] - initial) * shape

    @classmethod
    def run(cls, values: dict, request: GenerationRequest, ctx) -> GenerationResult:
        seed = _fixed_seed(request.seed)
        subseed = _fixed_seed(request.subseed)
        history = []
        for batch in range(request.n_iter):
            image = request.init_image
            for loop in range(values["loops"]):
                cell = copy_request(request)
                cell.n_iter, cell.init_image = 1, image
                cell.seed, cell.subseed = seed, subseed
                cell.denoising_strength = cls.strength(values, request.denoising_strength, loop)
                made = ctx.generate(cell)
                if not made.images:
                    break
                image = made.images[0]
                history.append(image)
                seed, subseed = seed + 1, subseed + 1
        result = ctx.made
        if len(history) > 1:
            grid = grid_of(history, request.n_iter)
            ctx.save_grid(grid, result.infotexts[0], basename="grid", seed=result.seeds[0],
                          prompt=request.prompt)
            _with_grid(result, grid, result.infotexts[0])
        return result
