"""Guidance add-ons at work in the denoising loop (declared in ``webui.addons``)."""
from webui.engine.guidance.hooks import GuideCall, GuidanceHooks

__all__ = ["GuideCall", "GuidanceHooks"]
