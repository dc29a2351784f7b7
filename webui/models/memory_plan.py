"""The memory planner: where a job's weights live and how the VAE works, from what is free and what is needed.

A pure function of plain numbers (``plan_memory``), so every choice is testable
without a GPU: ``ModelBytes`` (sizes of the loaded modules), ``JobFootprint``
(what the job's pixels cost) and ``MemoryBudget`` (what the device and the RAM
have free) go in; a ``MemoryPlan`` comes out, with the offload mode and the
reasons in words for the log and the UI.

Offload modes, cheapest first (the names of diffusers' methods):

- ``none``: every weight stays on the compute device.
- ``model``: the UNet, the text encoders and the VAE wait in RAM and move to the
  device whole, one at a time, when used (A1111's ``--medvram``).
- ``group``: as ``model``, and the UNet itself moves block by block.
- ``sequential``: as ``model``, and the UNet moves layer by layer (A1111's ``--lowvram``).

Precision is chosen at start-up (``--precision``) and never changed per job, because the
same seed must give the same image whatever else is loaded; when fp16 would make a plan
fit where fp32 does not, the reasons say so.
"""
from __future__ import annotations

from dataclasses import dataclass

OFFLOAD_MODES = ("none", "model", "group", "sequential")

# Peak bytes of one UNet forward per latent pixel, per row of the batch (cond and uncond are rows),
# per channel of its first level, per byte of its dtype. Measured with a tensor-bytes tracker on an
# SD 1.5-shaped UNet (26 at 512 px, 28 at 256 px) and on the demo UNet (25); 32 leaves a margin.
UNET_ACTIVATION_FACTOR = 32
CONTROLNET_ACTIVATION_SHARE = 0.5  # a ControlNet is the UNet's encoder half
SHARED_MEMORY_DEVICES = ("cpu", "mps")  # the device's memory is the RAM: moving weights to "RAM" frees nothing
HEADROOM = 1.15  # allocator fragmentation and the odd temporary the estimates leave out
RESERVE_BYTES = 384 * 2 ** 20  # kept free for the CUDA context's workspaces and the live preview


@dataclass(frozen=True)
class ModelBytes:
    """Weight bytes of what a job needs, in the dtypes they run in."""

    unet: int
    text_encoders: tuple[int, ...]
    vae: int
    extras: int = 0  # ControlNets and adapters: they run beside the UNet, kept on the device
    largest_unet_block: int = 0  # the biggest block that group offload moves at once
    unet_outside_blocks: int = 0  # what group offload keeps on the device for a whole step (mid block, in/out)
    largest_unet_layer: int = 0  # the biggest single layer that sequential offload moves at once

    @property
    def total(self) -> int:
        return self.unet + sum(self.text_encoders) + self.vae + self.extras


@dataclass(frozen=True)
class JobFootprint:
    """What a job's pixels cost: its largest pass (hires fix included) and its batch."""

    width: int
    height: int
    batch_size: int
    unet_channels: int  # channels of the UNet's first level (320 for SD 1.5 and SDXL)
    vae_channels: int  # channels of the VAE decoder's full-size stage (128 for SD VAEs)
    element_size: int  # bytes per value of the UNet's dtype
    vae_element_size: int
    latent_factor: int = 8
    controlnets: int = 0
    vae_tiling: bool = True  # the VAE may work in tiles (the vae_tiling_min_pixels option is not 0)
    vae_tiles_by_size: bool = False  # the image is above vae_tiling_min_pixels: the VAE tiles whatever the plan
    vae_tile_size: int = 512
    vae_bytes_factor: int = 8  # webui.engine.vae_ops.UNTILED_BYTES_FACTOR: peak bytes per pixel, channel, dtype byte

    def unet_activation_bytes(self) -> int:
        """About the peak of one denoising step's activations: UNet plus ControlNets, cond and uncond rows."""
        latent_pixels = (self.height // self.latent_factor) * (self.width // self.latent_factor)
        rows = 2 * self.batch_size
        unet = UNET_ACTIVATION_FACTOR * rows * latent_pixels * self.unet_channels * self.element_size
        return int(unet * (1 + CONTROLNET_ACTIVATION_SHARE * self.controlnets))

    def vae_activation_bytes(self, tiled: bool) -> int:
        """About the peak of decoding one image (the VAE decodes a batch one image at a time)."""
        side_h, side_w = (min(self.height, self.vae_tile_size), min(self.width, self.vae_tile_size)) if tiled \
            else (self.height, self.width)
        work = side_h * side_w * self.vae_channels * self.vae_element_size * self.vae_bytes_factor
        # the full-size output is kept whole in float32 (3 channels, plus the tile blending weights)
        return int(work + (self.height * self.width * 16 if tiled else 0))


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes free for this job: on the compute device (with our own weights counted as free, since they can
    move) and in RAM."""

    device: str
    device_bytes: int
    ram_bytes: int
    dtype: str = "fp16"


@dataclass(frozen=True)
class MemoryPlan:
    """Where the weights live for one job, whether the VAE will likely tile, and why."""

    offload: str
    vae_tiled: bool
    device: str
    needed_bytes: int  # the estimated peak of the chosen plan on the compute device
    free_bytes: int
    reasons: tuple[str, ...] = ()
    forced: bool = False

    @property
    def weights_on_device(self) -> bool:
        return self.offload == "none"

    def describe(self) -> str:
        """One line for the log and the UI: the choice, the estimate and why."""
        what = {"none": "all weights stay on the device", "model": "model offload (each model moves to the "
                "device only while it runs)", "group": "group offload (the UNet moves block by block)",
                "sequential": "sequential offload (the UNet moves layer by layer)"}[self.offload]
        if self.device in SHARED_MEMORY_DEVICES and self.offload == "none":
            what = "all weights in RAM (CPU)" if self.device == "cpu" else "all weights in unified memory (MPS)"
        tiles = "; the VAE works in tiles" if self.vae_tiled else ""
        figures = f"needs about {_gib(self.needed_bytes)} of {_gib(self.free_bytes)} free"
        why = (" — " + "; ".join(self.reasons)) if self.reasons else ""
        return f"memory: {what}{tiles}, {figures}{why}"


def _gib(value: int) -> str:
    return f"{value / 2 ** 30:.1f} GiB"


def _peaks(models: ModelBytes, job: JobFootprint, tiled: bool) -> dict[str, int]:
    """The estimated device peak of each offload mode."""
    unet_act = job.unet_activation_bytes()
    vae_act = job.vae_activation_bytes(tiled)
    largest_encoder = max(models.text_encoders, default=0)
    resident = models.total + max(unet_act, vae_act)
    model = max(models.unet + models.extras + unet_act, largest_encoder, models.vae + vae_act)
    # group: two blocks at once (the one running and the next) besides the layers outside the block lists
    block = models.largest_unet_block or models.unet // 4
    group = max(2 * block + models.unet_outside_blocks + models.extras + unet_act, largest_encoder,
                models.vae + vae_act)
    layer = models.largest_unet_layer or models.unet // 64
    sequential = max(2 * layer + models.extras + unet_act, largest_encoder, models.vae + vae_act)
    return {"none": resident, "model": model, "group": group, "sequential": sequential}


def _with_margin(value: int) -> int:
    return int(value * HEADROOM) + RESERVE_BYTES


def plan_memory(budget: MemoryBudget, models: ModelBytes, job: JobFootprint, forced: str | None = None) -> MemoryPlan:
    """The cheapest plan whose estimated peak fits ``budget`` (``forced``: that offload mode, whatever fits)."""
    if forced is not None and forced not in OFFLOAD_MODES:
        raise ValueError(f"memory mode {forced!r}: choose one of {', '.join(OFFLOAD_MODES)}")
    untiled = _peaks(models, job, tiled=False)
    tiled = _peaks(models, job, tiled=True)
    if budget.device in SHARED_MEMORY_DEVICES:
        return _cpu_plan(budget, untiled, tiled, job, forced)
    if forced is not None:
        peak_untiled, peak_tiled = untiled[forced], tiled[forced]
        use_tiles = job.vae_tiles_by_size or (job.vae_tiling and _with_margin(peak_untiled) > budget.device_bytes)
        peak = peak_tiled if use_tiles else peak_untiled
        reasons = ["chosen in Settings (memory_offload)"]
        if _with_margin(peak) > budget.device_bytes:
            reasons.append("it may not fit: the estimate is above what is free")
        return MemoryPlan(forced, use_tiles, budget.device, _with_margin(peak), budget.device_bytes,
                          tuple(reasons), forced=True)
    reasons: list[str] = []
    for mode in OFFLOAD_MODES:
        for use_tiles in _tile_choices(job):
            peak = (tiled if use_tiles else untiled)[mode]
            if _with_margin(peak) <= budget.device_bytes:
                if mode != "none":
                    resident = (tiled if job.vae_tiling else untiled)["none"]
                    reasons.append(f"keeping every weight on the device would need about "
                                   f"{_gib(_with_margin(resident))}")
                if use_tiles and not job.vae_tiles_by_size:
                    reasons.append(f"an untiled VAE pass would need about {_gib(_with_margin(untiled[mode]))}")
                return MemoryPlan(mode, use_tiles, budget.device, _with_margin(peak), budget.device_bytes,
                                  tuple(reasons))
    smallest = tiled["sequential"] if job.vae_tiling else untiled["sequential"]
    reasons.append("even layer by layer the estimate is above what is free: the job may run out of memory "
                   "(a smaller image or batch fits better)")
    if budget.dtype == "fp32":
        reasons.append("--precision fp16 would halve the weights")
    return MemoryPlan("sequential", job.vae_tiling, budget.device, _with_margin(smallest), budget.device_bytes,
                      tuple(reasons))


def _tile_choices(job: JobFootprint) -> tuple[bool, ...]:
    """Whether the VAE may work whole and whether in tiles, untiled first (the options decide some of it)."""
    if job.vae_tiles_by_size:
        return (True,)
    return (False, True) if job.vae_tiling else (False,)


def _cpu_plan(budget: MemoryBudget, untiled: dict, tiled: dict, job: JobFootprint, forced: str | None) -> MemoryPlan:
    """On the CPU (and on Apple's GPUs, which share the RAM) the weights are in RAM already: nothing to offload;
    only the VAE's tiles are a choice.

    A forced mode is still applied (the hooks run, moving nothing), so the setting acts the same everywhere."""
    use_tiles = job.vae_tiles_by_size or (job.vae_tiling and _with_margin(untiled["none"]) > budget.ram_bytes)
    peak = (tiled if use_tiles else untiled)["none"]
    reasons = []
    if forced not in (None, "none"):
        reasons.append("chosen in Settings (memory_offload); on the CPU the weights are in RAM already, so it "
                       "saves nothing")
    if use_tiles and not job.vae_tiles_by_size:
        reasons.append(f"an untiled VAE pass would need about {_gib(_with_margin(untiled['none']))} of RAM")
    if _with_margin(peak) > budget.ram_bytes:
        reasons.append("the estimate is above the free RAM: the system may swap")
    return MemoryPlan(forced or "none", use_tiles, budget.device, _with_margin(peak), budget.ram_bytes, tuple(reasons),
                      forced=forced is not None)
