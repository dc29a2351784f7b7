"""A1111's X/Y/Z plot: one image per combination of up to three axes, drawn as a grid with legends."""
from __future__ import annotations

import random

from PIL import Image

from webui.addons.base import Param
from webui.infotext import quote_value
from webui.schemas import GenerationRequest, GenerationResult, InvalidRequest, JobInterrupted
from webui.scripts.axis_values import join_values, split_values
from webui.scripts.base import ScriptSpec
from webui.scripts.grids import draw_legends, grid_of
from webui.scripts.xyz_axes import Axis, apply_axis, copy_request, find_axis

MAX_CELLS = 1000
AXIS_NAMES = ("x", "y", "z")


def _tab(request: GenerationRequest) -> str:
    return "txt2img" if request.init_image is None else "img2img"


def _axis_params(name: str, default: str) -> tuple[Param, ...]:
    upper = name.upper()
    return (Param(f"{name}_type", f"{upper} type", default),
            Param(f"{name}_values", f"{upper} values", ""),
            Param(f"{name}_values_dropdown", f"{upper} values", []))


class XYZPlot(ScriptSpec):
    """Runs the job once per cell of up to three axes and returns the grid first (A1111's X/Y/Z plot)."""

    key = "xyz_plot"
    title = "X/Y/Z plot"
    modes = ("txt2img", "img2img", "inpaint")
    # A1111 1.10's run() order. ``*_type`` is the axis index in the tab's list (or, in our API, its label).
    params = (
        *_axis_params("x", "Seed"), *_axis_params("y", "Nothing"), *_axis_params("z", "Nothing"),
        Param("draw_legend", "Draw legend", True),
        Param("include_lone_images", "Include Sub Images", False),
        Param("include_sub_grids", "Include Sub Grids", False),
        Param("no_fixed_seeds", "Keep -1 for seeds", False),
        Param("vary_seeds_x", "Vary seeds for X", False),
        Param("vary_seeds_y", "Vary seeds for Y", False),
        Param("vary_seeds_z", "Vary seeds for Z", False),
        Param("margin_size", "Grid margins (px)", 0, 0, 500, step=2),
        Param("csv_mode", "Use text inputs instead of dropdowns", False),
    )

    # ------------------------------------------------------------ reading the axes
    @classmethod
    def _axis_values(cls, axis: Axis, values: dict, name: str) -> list:
        if axis.label == "Nothing":
            return [0]
        text, dropdown = values[f"{name}_values"], values[f"{name}_values_dropdown"]
        # A1111 reads the dropdown for axes with choices unless csv_mode; a client that sends only text still works.
        items = list(dropdown) if axis.choices is not None and not values["csv_mode"] and dropdown \
            else split_values(text)
        try:
            parsed = axis.expand(items)
        except ValueError as exc:
            raise InvalidRequest(f"script_args: {name.upper()} values for {axis.label!r}: {exc}",
                                 field="script_args") from None
        if not parsed:
            raise InvalidRequest(f"script_args: {name.upper()} values are empty for the axis {axis.label!r}",
                                 field="script_args")
        return parsed

    @classmethod
    def _axes(cls, values: dict, request: GenerationRequest) -> list[tuple[Axis, list]]:
        tab = _tab(request)
        axes = []
        for name in AXIS_NAMES:
            axis = find_axis(tab, values[f"{name}_type"], f"script_args.{name}_type")
            axes.append((axis, cls._axis_values(axis, values, name)))
        return axes

    @classmethod
    def prepare(cls, values: dict, request: GenerationRequest, env) -> dict:
        """Check every axis and value now (unknown axis, sampler, checkpoint... -> 422); store axes by label."""
        values = dict(values)
        cells = 1
        for name, (axis, parsed) in zip(AXIS_NAMES, cls._axes(values, request)):
            if axis.check is not None:
                axis.check(parsed, request, env)
            if axis.label == "Checkpoint name":  # store the titles the catalog resolved
                values[f"{name}_values"] = join_values(env.catalog.find_checkpoint(v).title for v in parsed)
                values[f"{name}_values_dropdown"] = []
            values[f"{name}_type"] = axis.label
            cells *= len(parsed)
        if cells * request.batch_size * request.n_iter > MAX_CELLS:
            raise InvalidRequest(f"script_args: the plot would make {cells * request.batch_size * request.n_iter} "
                                 f"images, over this server's limit of {MAX_CELLS}", field="script_args")
        return values

    @classmethod
    def image_count(cls, values: dict, request: GenerationRequest) -> int:
        cells = 1
        for _, parsed in cls._axes(values, request):
            cells *= len(parsed)
        return cells * request.batch_size * request.n_iter

    # ------------------------------------------------------------ running
    @staticmethod
    def _fix_seeds(axis: Axis, parsed: list) -> list:
        if axis.label not in ("Seed", "Var. seed"):
            return parsed
        return [random.randrange(4294967294) if v in (None, "", -1) else v for v in parsed]

    @staticmethod
    def _loop_order(axes) -> list[int]:
        """Axis positions, outermost first: the costliest axis (a checkpoint) changes least often.

        Ties keep A1111's default order, Z outermost, then Y, then X.
        """
        return sorted((2, 1, 0), key=lambda i: -axes[i][0].cost)

    @classmethod
    def run(cls, values: dict, request: GenerationRequest, ctx) -> GenerationResult:
        base = copy_request(request)
        axes = cls._axes(values, request)
        if not values["no_fixed_seeds"]:
            if base.seed is None or base.seed < 0:
                base.seed = random.randrange(4294967294)
            if base.subseed is None or base.subseed < 0:
                base.subseed = random.randrange(4294967294)
            axes = [(axis, cls._fix_seeds(axis, parsed)) for axis, parsed in axes]
        (_, xs), (_, ys), (_, zs) = axes
        count = len(xs) * len(ys) * len(zs)
        cells: list = [None] * count
        infotexts: list = [""] * count
        seeds: list = [None] * count
        prompts: list = [""] * count

        try:
            cls._run_cells(values, base, axes, ctx, cells, infotexts, seeds, prompts)
        except JobInterrupted:
            # As A1111: the grid still comes back, with blank cells for what was not made.
            raise JobInterrupted("interrupted", partial=cls._assemble(values, axes, cells, infotexts, seeds, prompts,
                                                                      ctx)) from None
        return cls._assemble(values, axes, cells, infotexts, seeds, prompts, ctx)

    @classmethod
    def _run_cells(cls, values, base, axes, ctx, cells, infotexts, seeds, prompts) -> None:
        """One engine run per cell, the costliest axis outermost; fills the lists by A1111's cell index."""
        (_, xs), (_, ys), (_, zs) = axes
        outer, middle, inner = cls._loop_order(axes)
        sizes = (len(xs), len(ys), len(zs))
        for a in range(sizes[outer]):
            for b in range(sizes[middle]):
                for c in range(sizes[inner]):
                    at = [0, 0, 0]
                    at[outer], at[middle], at[inner] = a, b, c
                    ix, iy, iz = at
                    cell = copy_request(base)
                    for (axis, parsed), i in zip(axes, at):
                        apply_axis(cell, axis, parsed[i], parsed)
                    if values["vary_seeds_x"]:
                        cell.seed += ix
                    if values["vary_seeds_y"]:
                        cell.seed += iy * len(xs)
                    if values["vary_seeds_z"]:
                        cell.seed += iz * len(xs) * len(ys)
                    made = ctx.generate(cell)
                    index = ix + iy * len(xs) + iz * len(xs) * len(ys)
                    if made.images:
                        cells[index] = made.images[0] if len(made.images) == 1 else grid_of(made.images, 1)
                        infotexts[index], seeds[index] = made.infotexts[0], made.seeds[0] if made.seeds else None
                        prompts[index] = made.prompts[0] if made.prompts else cell.prompt

    @classmethod
    def _assemble(cls, values, axes, cells, infotexts, seeds, prompts, ctx) -> GenerationResult:
        (x_axis, xs), (y_axis, ys), (z_axis, zs) = axes
        made = [c for c in cells if c is not None]
        result = GenerationResult(warnings=list(ctx.made.warnings), parameters=dict(ctx.made.parameters))
        if not made:
            return result
        size = made[0].size
        cells = [c if c is not None else _blank(size) for c in cells]
        x_labels = [x_axis.format(x_axis, x) for x in xs]
        y_labels = [y_axis.format(y_axis, y) for y in ys]
        z_labels = [z_axis.format(z_axis, z) for z in zs]
        per_z = len(xs) * len(ys)
        cell_w = max(c.width for c in cells)
        cell_h = max(c.height for c in cells)
        sub_grids = []
        for iz in range(len(zs)):
            grid = grid_of(cells[iz * per_z:(iz + 1) * per_z], len(ys))
            if values["draw_legend"]:
                grid = draw_legends(grid, cell_w, cell_h, x_labels, y_labels, values["margin_size"])
            sub_grids.append(grid)
        main = grid_of(sub_grids, 1)
        if values["draw_legend"]:
            main = draw_legends(main, max(g.width for g in sub_grids), max(g.height for g in sub_grids), z_labels, [""])
        info = _with_plot_fields(next((t for t in infotexts if t), ""), values, axes)
        sub_infos = [_with_plot_fields(infotexts[iz * per_z] or info, values, axes) for iz in range(len(zs))]
        first_seed = next((s for s in seeds if s is not None), None)
        ctx.save_grid(main, info, basename="xyz_grid", seed=first_seed, prompt=prompts[0])
        images, texts = [main], [info]
        record_seeds, record_prompts = [first_seed], [prompts[0]]
        if values["include_sub_grids"]:
            for iz, grid in enumerate(sub_grids):
                if len(zs) > 1:
                    ctx.save_grid(grid, sub_infos[iz], basename="xyz_grid", seed=seeds[iz * per_z],
                                  prompt=prompts[iz * per_z])
                images.append(grid), texts.append(sub_infos[iz])
                record_seeds.append(seeds[iz * per_z]), record_prompts.append(prompts[iz * per_z])
        if values["include_lone_images"]:
            images += cells
            texts += infotexts
            record_seeds += seeds
            record_prompts += prompts
        result.images, result.infotexts = images, texts
        result.parameters["index_of_first_image"] = len(images) - (len(cells) if values["include_lone_images"] else 0)
        result.seeds = [s if s is not None else -1 for s in record_seeds]
        result.prompts = record_prompts
        result.negative_prompts = [ctx.request.negative_prompt] * len(images)
        result.subseeds = [ctx.request.subseed] * len(images)
        result.saved_paths = list(ctx.made.saved_paths)
        return result


def _blank(size) -> Image.Image:
    """A black cell where a run made no image (interrupted or skipped), as A1111 fills it."""
    return Image.new("RGB", size)


def _with_plot_fields(infotext: str, values: dict, axes) -> str:
    """The first cell's infotext with A1111's ``Script``, ``X Type``, ``X Values``... appended."""
    fields = {"Script": XYZPlot.title}
    for name, (axis, _) in zip(AXIS_NAMES, axes):
        if name != "x" and axis.label == "Nothing":
            continue
        shown = values[f"{name}_values"] or join_values(values[f"{name}_values_dropdown"])
        fields[f"{name.upper()} Type"] = axis.label
        fields[f"{name.upper()} Values"] = shown
    extra = ", ".join(f"{key}: {quote_value(value)}" for key, value in fields.items())
    return f"{infotext}, {extra}" if infotext else extra
