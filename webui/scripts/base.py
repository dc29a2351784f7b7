"""A selectable script (A1111's Script dropdown) on the add-ons' typed interface.

A script is an AddonSpec whose fields follow the positional order of A1111's
``Script.run`` arguments, and which works around a whole job: it runs the engine
several times through a ScriptContext and returns one GenerationResult.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from webui.addons.base import AddonSpec
from webui.schemas import GenerationRequest, GenerationResult


@dataclass(frozen=True)
class ScriptEnv:
    """What scripts check values against when a job is submitted."""

    catalog: Any = None  # webui.catalog.Catalog: checkpoint names
    upscalers: Any = None  # webui.postprocess.UpscalerRegistry: upscaler names
    max_pixels: int = 64 * 1024 * 1024


class ScriptSpec(AddonSpec):
    """What a script declares: ``key``, A1111's ``title``, ``params`` in ``run()`` order, and ``run``."""

    hooks: ClassVar[tuple[str, ...]] = ("job",)
    modes: ClassVar[tuple[str, ...]] = ("txt2img", "img2img", "inpaint")

    @classmethod
    def is_enabled(cls, values: dict) -> bool:
        return True

    @classmethod
    def infotext(cls, values: dict) -> dict:
        return {}

    @classmethod
    def from_infotext(cls, parsed: dict) -> dict | None:
        return None

    @classmethod
    def prepare(cls, values: dict, request: GenerationRequest, env) -> dict:
        """Check the values against the request and the server (``env``: catalog, upscalers) at submission.

        Returns the values to store with the job; raises InvalidRequest naming the field.
        """
        return values

    @classmethod
    def image_count(cls, values: dict, request: GenerationRequest) -> int:
        """How many images the engine makes for this job (for progress)."""
        return request.batch_size * request.n_iter

    @classmethod
    def run(cls, values: dict, request: GenerationRequest, ctx) -> GenerationResult:
        """Run the whole job through ``ctx`` (a ScriptContext)."""
        raise NotImplementedError
