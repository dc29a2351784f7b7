"""Where a checkpoint's weights live: on the compute device, or in RAM moving to the device when used.

``Placement`` applies one of the memory planner's offload modes (``webui.models.memory_plan``)
to a ``LoadedComponents`` and takes it off again:

- ``none``: every module on the device.
- ``model``: every module waits in RAM; a forward pre-hook moves the one about to run to the
  device and the previous one back (what diffusers' ``enable_model_cpu_offload`` does, here
  for modules that are not in a pipeline).
- ``group`` / ``sequential``: the UNet moves block by block or layer by layer through
  diffusers' group offloading hooks; the text encoders and the VAE move whole as in ``model``.

Hooks act on modules, never on particular Parameter objects, so a LoRA that swaps a
layer's Parameter (webui.models.lora) is moved with its layer. Offloaded modules carry the
device they compute on (``execution_device``), where callers put their inputs.
"""
from __future__ import annotations

import logging
import weakref

import torch

log = logging.getLogger(__name__)

_EXECUTION_DEVICE = "_webui_execution_device"
_GROUP_HOOKS = ("group_offloading", "lazy_prefetch_group_offloading", "layer_execution_tracker")
HOME = "cpu"  # where offloaded weights wait


def execution_device(module: torch.nn.Module) -> torch.device:
    """The device ``module`` computes on, where its inputs go (under offload its weights may wait in RAM)."""
    found = getattr(module, _EXECUTION_DEVICE, None)
    return found if found is not None else next(module.parameters()).device


class _Shelf:
    """Whole modules waiting in RAM; the one about to run goes to the device, the one that ran before comes back."""

    def __init__(self, device: torch.device):
        self.device = device
        self.active: torch.nn.Module | None = None
        self.moves = 0  # how many times a module went to the device (tests and the log read it)
        self._handles = []

    def add(self, module: torch.nn.Module, entry_points: list[torch.nn.Module]) -> None:
        module.to(HOME)
        for entry in entry_points:
            self._handles.append(entry.register_forward_pre_hook(lambda _m, _args, owner=module: self.activate(owner)))

    def activate(self, module: torch.nn.Module) -> None:
        if self.active is module:
            return
        if self.active is not None:
            self.active.to(HOME)
        module.to(self.device)
        self.active = module
        self.moves += 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.active = None


def _entry_points(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The submodules through which a module is run: itself, or for a VAE (run through ``encode``/``decode``,
    not ``forward``) each direct child."""
    if hasattr(module, "decode") and hasattr(module, "encode"):
        return list(module.children())
    return [module]


class Placement:
    """The offload mode applied to the live components (owned by the ModelManager, used on its worker only)."""

    def __init__(self, device: str):
        self.device = torch.device(device)
        self.mode = "none"
        self._shelf: _Shelf | None = None
        self._placed: tuple = ()  # ids of the module objects the current mode was applied to
        self._tagged: weakref.WeakSet = weakref.WeakSet()  # modules given hooks or an execution device

    @property
    def shelf_moves(self) -> int:
        return self._shelf.moves if self._shelf is not None else 0

    def current(self, components) -> bool:
        """Whether ``components`` are placed as ``mode`` says (a swapped VAE or a new checkpoint are not)."""
        return self._placed == _identity(components)

    def apply(self, components, mode: str) -> None:
        """Place ``components`` by ``mode`` (taking the previous mode off first)."""
        if mode == self.mode and self.current(components):
            return
        self.remove()
        if mode == "none":
            for module in components.modules():
                module.to(self.device)
        else:
            self._offload(components, mode)
        self.mode = mode
        self._placed = _identity(components)
        log.info("weights placed: %s", mode)

    def _offload(self, components, mode: str) -> None:
        shelf = _Shelf(self.device)
        whole = [*components.text_encoders, components.vae]
        if mode == "model":
            whole.insert(0, components.unet)
        else:
            from diffusers.hooks import apply_group_offloading

            components.unet.to(HOME)
            if mode == "group":
                apply_group_offloading(components.unet, onload_device=self.device, offload_device=HOME,
                                       offload_type="block_level", num_blocks_per_group=1)
            else:
                apply_group_offloading(components.unet, onload_device=self.device, offload_device=HOME,
                                       offload_type="leaf_level")
            self._tag(components.unet)
        for module in whole:
            shelf.add(module, _entry_points(module))
            self._tag(module)
        self._shelf = shelf

    def _tag(self, module: torch.nn.Module) -> None:
        setattr(module, _EXECUTION_DEVICE, self.device)
        self._tagged.add(module)

    def remove(self) -> None:
        """Take the offload hooks off every module that had them (also modules swapped out since, such as a
        VAE a job replaced); the modules stay wherever they are until the next ``apply``."""
        if self._shelf is not None:
            self._shelf.remove()
            self._shelf = None
        for module in list(self._tagged):
            if hasattr(module, _EXECUTION_DEVICE):
                delattr(module, _EXECUTION_DEVICE)
            registry = getattr(module, "_diffusers_hook", None)
            if registry is not None:
                for name in _GROUP_HOOKS:
                    registry.remove_hook(name, recurse=True)
        self._tagged = weakref.WeakSet()
        self._placed = ()
        self.mode = "none"


def _identity(components) -> tuple:
    return tuple(id(module) for module in components.modules()) if components is not None else ()


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def largest_child_bytes(module: torch.nn.Module, leaf: bool) -> int:
    """The biggest block (a direct child of a ModuleList, what group offload moves) or leaf layer of ``module``."""
    sizes = []
    for child in module.modules():
        is_leaf = not any(True for _ in child.children())
        if (leaf and is_leaf) or (not leaf and isinstance(child, torch.nn.ModuleList)):
            sizes.extend([module_bytes(child)] if leaf else [module_bytes(item) for item in child])
    return max(sizes, default=0)
