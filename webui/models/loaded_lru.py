"""A few loaded models by key, least recently used dropped first: the shape of the side caches the manager owns."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable


class LoadedLRU:
    """Up to ``limit`` loaded models by key; ``unload()`` drops them all (the manager's holder interface)."""

    def __init__(self, limit: int = 2):
        self.limit = max(1, limit)
        self._loaded: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.load_count = 0  # how many times a model was loaded (tests look at this)

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """The model under ``key``, loaded with ``load()`` when it is not kept (the oldest then goes)."""
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        model = load()
        self.load_count += 1
        with self._lock:
            self._loaded[key] = model
            while len(self._loaded) > self.limit:
                self._loaded.popitem(last=False)
        return model

    def clear(self) -> None:
        """Drop every loaded model (the manager frees memory after this)."""
        with self._lock:
            self._loaded.clear()

    unload = clear  # the manager's holder interface (ModelManager.register)
