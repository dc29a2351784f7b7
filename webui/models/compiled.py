"""torch.compile for the UNet without a slow first image: graphs are compiled in the background.

``CompiledUNet`` puts a dispatcher in front of a UNet's ``forward``. A call whose inputs (shapes,
dtypes, devices and the keyword structure) have a warm compiled graph runs compiled; any other call
runs the plain forward at once and, the first time its signature is seen, starts a background thread
that compiles a graph for it by one call with zero inputs of the same signature. So the first images
of a new size are made uncompiled while the graph is built, and the next ones use it.

Compiled graphs are only as good as dynamo's guards: a module attribute that a job changes (an
add-on's patch, a LoRA's weights) is checked on every call and makes torch recompile, never run a
stale graph. Inductor keeps compiled kernels on disk (app.py points it to outputs/cache/torchinductor),
so a restart recompiles faster.
CUDA graphs are not used: the warm-up runs on another thread than the jobs.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

import torch
from torch.utils._pytree import tree_flatten, tree_map

log = logging.getLogger(__name__)


def signature(args: tuple, kwargs: dict) -> tuple:
    """What a compiled graph is specialised on: each tensor's shape, strides, dtype and device, and the call's
    structure."""
    leaves, spec = tree_flatten((args, kwargs))
    described = tuple((tuple(x.shape), x.stride(), str(x.dtype), str(x.device)) if isinstance(x, torch.Tensor)
                      else ("value", repr(x)[:40]) for x in leaves)
    return str(spec), described


def zeros_like_strided(x: torch.Tensor) -> torch.Tensor:
    """Zeros with ``x``'s shape and strides (an expanded timestep has stride 0, and graphs guard on strides)."""
    extent = 1 + sum((size - 1) * stride for size, stride in zip(x.shape, x.stride()) if size > 0)
    return torch.zeros(extent, dtype=x.dtype, device=x.device).as_strided(x.shape, x.stride())


def describe_shape(args: tuple, kwargs: dict) -> str:
    """The latent size and rows of a UNet call, for messages ("64x64 latents, 2 rows")."""
    sample = args[0] if args else kwargs.get("sample")
    if not isinstance(sample, torch.Tensor) or sample.dim() != 4:
        return "these inputs"
    return f"{sample.shape[-1]}x{sample.shape[-2]} latents, {sample.shape[0]} rows"


def _lowest_priority() -> None:
    """Let the jobs' threads go first: the calling thread (and the compiler processes it starts) at nice 19."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: the compile just competes evenly
        pass


@dataclass
class CompileReport:
    """What the compiled UNet did during one job (read by the engine for the job's notes)."""

    compiled_calls: int = 0
    plain_calls: int = 0
    started: list[str] = field(default_factory=list)  # sizes whose compilation this job started
    failed: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        """Lines for the job's result."""
        lines = []
        if self.compiled_calls:
            lines.append(f"torch.compile: {self.compiled_calls} of {self.compiled_calls + self.plain_calls} UNet "
                         "calls ran compiled")
        if self.started:
            lines.append(f"torch.compile: compiling the UNet in the background for {', '.join(self.started)}; "
                         "this job ran uncompiled, the next ones of that size use the compiled graph")
        lines.extend(f"torch.compile failed, the UNet runs uncompiled: {reason}" for reason in self.failed)
        return lines


class CompiledUNet:
    """A UNet whose forward runs a compiled graph once one is warm for the call's inputs."""

    def __init__(self, unet: torch.nn.Module, backend: str = "inductor"):
        self.unet = unet
        self.backend = backend
        self._plain = unet.forward  # the bound method, before the dispatcher shadows it
        try:
            self._compiled = torch.compile(self._plain, backend=backend, dynamic=False)
        except Exception as exc:  # torch names the backends it knows
            raise ValueError(f"torch.compile backend {backend!r}: {str(exc).splitlines()[0][:300]}") from None
        self._lock = threading.Lock()
        self._ready: set[tuple] = set()
        self._busy: dict[tuple, threading.Thread] = {}
        self._failed: dict[tuple, str] = {}
        self._unreported: list[str] = []  # failures no job has told yet
        self.report = CompileReport()
        unet.forward = self._dispatch

    # ---- the dispatcher
    def _dispatch(self, *args, **kwargs):
        key = signature(args, kwargs)
        with self._lock:
            ready = key in self._ready
            if not ready and key not in self._busy and key not in self._failed:
                self._start(key, args, kwargs)
        if ready:
            self.report.compiled_calls += 1
            return self._compiled(*args, **kwargs)
        self.report.plain_calls += 1
        return self._plain(*args, **kwargs)

    def _start(self, key: tuple, args: tuple, kwargs: dict) -> None:
        zeros = tree_map(lambda x: zeros_like_strided(x) if isinstance(x, torch.Tensor) else x, (args, kwargs))
        shape = describe_shape(args, kwargs)
        thread = threading.Thread(target=self._warm, args=(key, zeros, shape), name="unet-compile", daemon=True)
        self._busy[key] = thread
        self.report.started.append(shape)
        log.info("torch.compile (%s): compiling the UNet for %s in the background", self.backend, shape)
        thread.start()

    def _warm(self, key: tuple, inputs: tuple, shape: str) -> None:
        args, kwargs = inputs
        _lowest_priority()
        try:
            with torch.no_grad():
                self._compiled(*args, **kwargs)
        except Exception as exc:  # a backend that cannot compile this model: it keeps running uncompiled
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            log.warning("torch.compile of the UNet for %s failed: %s", shape, reason)
            with self._lock:
                self._failed[key] = reason
                self._busy.pop(key, None)
                self._unreported.append(reason)
            return
        with self._lock:
            self._ready.add(key)
            self._busy.pop(key, None)
        log.info("torch.compile: the UNet is compiled for %s", shape)

    # ---- for the engine and the manager
    def start_job(self) -> CompileReport:
        """A fresh report for the job about to run."""
        self.report = CompileReport()
        return self.report

    def finish_job(self) -> list[str]:
        """The job's notes, with the background failures since the last job's (each told once)."""
        with self._lock:
            self.report.failed.extend(self._unreported)
            self._unreported.clear()
        return self.report.notes()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background compilations under way; whether none is left."""
        with self._lock:
            threads = list(self._busy.values())
        for thread in threads:
            thread.join(timeout)
        with self._lock:
            return not self._busy

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    def detach(self) -> None:
        """Give the UNet its plain forward back (compilations under way finish and are dropped)."""
        if self.unet.__dict__.get("forward") == self._dispatch:
            del self.unet.forward
        with self._lock:
            self._ready.clear()
