"""The queue's runner: a job with a script runs the script, any other job goes straight to the engine."""
from __future__ import annotations

from webui.schemas import GenerationRequest, InvalidRequest
from webui.scripts.context import ScriptContext


class ScriptRunner:
    """Wraps an engine's ``run(kind, request, control)`` so one queued job can hold a whole script."""

    def __init__(self, engine, *, settings=None, options=None, upscalers=None):
        self.engine = engine
        self.settings = settings
        self.options = options
        self.upscalers = upscalers

    def run(self, kind: str, request, control=None):
        """Run one queued job: the request's script when it names one, else the engine's own run."""
        name = getattr(request, "script_name", "") if isinstance(request, GenerationRequest) else ""
        if not name:
            return self.engine.run(kind, request, control)
        from webui.scripts.registry import find_script

        spec = find_script(name)
        if spec is None:
            raise InvalidRequest(f"script_name: no script named {name!r} on this server", field="script_name")
        values = spec.from_named(request.script_args, "script_args")
        ctx = ScriptContext(self.engine, request, control, total=spec.image_count(values, request),
                            saver=self._saver(request), save_grids=not request.do_not_save_grid,
                            upscalers=self.upscalers)
        models = getattr(self.engine, "models", None)
        before = getattr(models, "current_checkpoint", None)
        try:
            result = spec.run(values, request, ctx)
        finally:
            # A checkpoint axis (or a line's --sd_model) switched models: the job's own one is live again after.
            if before is not None and getattr(models.current_checkpoint, "sha256", None) != before.sha256:
                models.ensure(before)
        result.warnings = list(dict.fromkeys(result.warnings))
        return result

    def _saver(self, request: GenerationRequest):
        """A JobSaver for what the script itself saves (its grids, SD upscale's combined images)."""
        if self.settings is None:
            return None
        from webui.saving import JobSaver, effective_options

        opts = effective_options(self.options, request.override_settings)
        enabled = bool(request.save_images and self.settings.save_images)
        tab = "txt2img" if request.init_image is None else "img2img"
        return JobSaver(self.settings.outdir, tab, opts, enabled=enabled)
