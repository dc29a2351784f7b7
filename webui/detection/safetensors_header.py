"""Read a safetensors file's header (tensor names, shapes, metadata) without reading any weights."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class HeaderInfo:
    """Tensor shapes by name, and the file's ``__metadata__`` strings."""

    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


def read_safetensors_header(path: str | Path) -> HeaderInfo:
    """Parse the JSON header of a .safetensors file. Raises ValueError if it is not one."""
    path = Path(path)
    with path.open("rb") as handle:
        raw_len = handle.read(8)
        if len(raw_len) != 8:
            raise ValueError(f"{path.name}: too short to be a safetensors file")
        (length,) = struct.unpack("<Q", raw_len)
        if length <= 0 or length > MAX_HEADER_BYTES:
            raise ValueError(f"{path.name}: not a safetensors file (header length {length})")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path.name}: corrupt safetensors header: {exc}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path.name}: corrupt safetensors header")
    metadata = header.pop("__metadata__", None) or {}
    shapes, dtypes = {}, {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or "shape" not in entry:
            raise ValueError(f"{path.name}: corrupt entry for tensor {name!r}")
        shapes[name] = tuple(int(d) for d in entry["shape"])
        dtypes[name] = str(entry.get("dtype", ""))
    return HeaderInfo(shapes=shapes, dtypes=dtypes, metadata={str(k): str(v) for k, v in metadata.items()})
