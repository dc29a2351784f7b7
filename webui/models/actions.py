"""Checkpoint load, unload and reload as queue jobs, so only the worker ever touches weights.

An HTTP or gradio thread that wants another checkpoint does not call the
ModelManager: it queues a ``ModelAction`` (job kind ``"model"``). The worker runs
it in order with the generation jobs, so a switch asked for during a job happens
after that job and before every job queued after the switch. The request type
lives in webui.schemas, beside the other job requests, so the UI and the API can
queue one without importing this layer.
"""
from __future__ import annotations

from webui.schemas import MODEL_JOB_KIND, ModelAction

__all__ = ["MODEL_JOB_KIND", "ModelAction", "apply_model_action"]


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
