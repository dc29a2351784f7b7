"""A1111's selectable scripts (X/Y/Z plot, Prompt matrix, SD upscale, ...), run around whole jobs.

This package sits above the engine and below the API and UI: it builds
GenerationRequests and calls the engine, and imports neither gradio nor HTTP code.
"""
from webui.scripts.base import ScriptSpec
from webui.scripts.registry import SCRIPTS, find_script, resolve_script, script_info, script_titles
from webui.scripts.runner import ScriptRunner

__all__ = ["SCRIPTS", "ScriptRunner", "ScriptSpec", "find_script", "resolve_script", "script_info", "script_titles"]
