"""Checkpoint load, unload and reload as queue jobs, so only the worker ever touches weights.

An HTTP or gradio thread that wants another checkpoint does not call the
ModelManager: it queues a ``ModelAction`` (job kind ``"model"``). The worker runs
it in order with the generation jobs, so a switch asked for during a job happens
after that job and before every job queued after the switch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from webui.schemas import InvalidRequest

MODEL_JOB_KIND = "model"
MODEL_ACTIONS = ("load", "unload", "reload")


@dataclass
class ModelAction:
    """What to do with the live model: ``load`` a checkpoint (by title), ``unload`` it, or ``reload`` it from disk."""

    action: str
    checkpoint: str | None = None

    def __post_init__(self):
        if self.action not in MODEL_ACTIONS:
            raise InvalidRequest(f"model action must be one of {', '.join(MODEL_ACTIONS)}", field="action")
        if self.action == "load" and not self.checkpoint:
            raise InvalidRequest("loading a model needs a checkpoint name", field="checkpoint")

    def describe(self) -> str:
        """One line for queue listings: ``load checkpoint x.safetensors [abc]``."""
        return f"{self.action} checkpoint {self.checkpoint}" if self.checkpoint else f"{self.action} checkpoint"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelAction":
        return cls(action=data.get("action", ""), checkpoint=data.get("checkpoint"))


def apply_model_action(models, action: ModelAction) -> dict:
    """Run ``action`` on the model manager (on the worker thread); returns ``{"checkpoint": title or None}``."""
    if action.action == "load":
        info = models.select_checkpoint(action.checkpoint)
        return {"checkpoint": getattr(info, "title", action.checkpoint)}
    if action.action == "unload":
        models.unload()
    else:
        models.reload()
    current = models.current_checkpoint
    return {"checkpoint": current.title if current is not None else None}
