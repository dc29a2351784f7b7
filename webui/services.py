"""The bundle of long-lived objects that the UI and the API are given (built once in app.py).

The Protocols below are the exact surface the UI and API may use; tests may hand
in fakes that satisfy them (a fake engine behind the queue is fine, house rules).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from webui.config import Settings
from webui.schemas import ExtrasRequest, ExtrasResult, GenerationRequest, GenerationResult, JobControl


class ModelManagerLike(Protocol):
    """UI and API threads only read it; switching, unloading and reloading run on the worker as "model" jobs."""

    @property
    def current_checkpoint(self):  # CheckpointInfo | None
        ...

    def snapshot(self):
        """What is loaded (a ModelSnapshot), read without waiting for a running job."""

    def select_checkpoint(self, name: str):
        """Load (or switch to) the named checkpoint now; returns its CheckpointInfo (worker thread only)."""

    def unload(self) -> None:
        """Free the loaded checkpoint (RAM and GPU) (worker thread only)."""

    def reload(self) -> None:
        """Load the current checkpoint again from disk (worker thread only)."""


class EngineLike(Protocol):
    def run(self, kind: str, request, control: JobControl):
        """The one function the queue worker calls: kind is txt2img, img2img or extras."""

    def generate(self, request: GenerationRequest, control: JobControl | None = None) -> GenerationResult: ...

    def extras(self, request: ExtrasRequest, control: JobControl | None = None) -> ExtrasResult: ...

    def sampler_names(self) -> list[str]: ...

    def scheduler_names(self) -> list[str]: ...


@dataclass
class Services:
    """Everything the UI and API need, wired once by app.py."""

    settings: Settings
    catalog: Any  # webui.catalog.Catalog
    models: ModelManagerLike
    engine: EngineLike
    queue: Any  # webui.jobs.JobQueue
    options: Any  # webui.options.Options
    upscalers: Any = None  # webui.postprocess.UpscalerRegistry
    faces: Any = None  # webui.postprocess.FaceRestorers
    wildcards: Any = None  # webui.prompts WildcardIndex
    styles: Any = None  # webui.prompts StyleDatabase
    extra: dict = field(default_factory=dict)
    token_counter: Any = None  # webui.engine.token_counter.TokenCounter, made on first use

    def prompt_token_counter(self):
        """The engine's own prompt token counter (tokenizer and 75-token chunks; no weights), made on first use."""
        if self.token_counter is None:
            from webui.engine.token_counter import TokenCounter

            self.token_counter = TokenCounter(embedding_vectors=self.loaded_embedding_vectors)
        return self.token_counter

    def loaded_embedding_vectors(self) -> dict[str, int]:
        """Vector counts of the embeddings the loaded model has installed (published by the manager; no lock)."""
        snapshot = getattr(self.models, "snapshot", None)
        status = getattr(snapshot(), "embeddings", None) if callable(snapshot) else None
        return dict(getattr(status, "loaded", None) or {})

    def refresh_wildcards(self):
        """Rescan the wildcards folder; the engine uses the new index from its next job on."""
        from webui.prompts.wildcards import WildcardIndex

        self.wildcards = WildcardIndex.scan(self.settings.wildcards_dir)
        if hasattr(self.engine, "wildcards"):
            self.engine.wildcards = self.wildcards
        return self.wildcards
