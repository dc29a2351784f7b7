"""A request's ``script_name`` and ``script_args`` (A1111's selectable scripts) read into the GenerationRequest."""
from __future__ import annotations

from webui.api.models import GenerationBody
from webui.schemas import GenerationRequest
from webui.scripts import resolve_script
from webui.scripts.base import ScriptEnv


def attach_script(body: GenerationBody, request: GenerationRequest, services) -> GenerationRequest:
    """Validate the body's script against the request and the server and store it on ``request``.

    An unknown script, an axis or value the script cannot honour is a 422 naming
    ``script_name`` or ``script_args``, before anything is queued.
    """
    name = (body.script_name or "").strip()
    if not name or name.lower() == "none":
        return request
    env = ScriptEnv(catalog=services.catalog, upscalers=services.upscalers,
                    max_pixels=services.settings.max_image_pixels)
    request.script_name, request.script_args = resolve_script(name, body.script_args, request.mode, request, env)
    return request
