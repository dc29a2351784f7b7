"""One job's view of the runtime options: the server's values under the job's ``override_settings``."""
from __future__ import annotations

from collections.abc import Mapping


class JobOptions:
    """Reads like ``webui.options.Options`` (``get``, ``as_dict``) with a job's overrides on top; never writes."""

    def __init__(self, options, overrides: Mapping):
        self._options = options
        self._overrides = dict(overrides)

    def get(self, key: str, default=None):
        """The job's value of an option: its override, else the server's."""
        if key in self._overrides:
            return self._overrides[key]
        return self._options.get(key, default) if self._options is not None else default

    def as_dict(self) -> dict:
        """Every option with the job's overrides applied."""
        values = self._options.as_dict() if self._options is not None else {}
        values.update(self._overrides)
        return values
