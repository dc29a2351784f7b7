"""Guidance add-ons as typed plugins: declared fields, A1111 positional args, infotext keys.

Pure Python (no torch): the API, the UI and infotext parsing read these
declarations; the engine's ``webui.engine.guidance`` runs them.
"""
from webui.addons.base import AddonSpec, Param
from webui.addons.registry import ADDONS, addons_from_infotext, addons_infotext, find_addon, resolve_addons

__all__ = ["ADDONS", "AddonSpec", "Param", "addons_from_infotext", "addons_infotext", "find_addon",
           "resolve_addons"]
