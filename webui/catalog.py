"""What is on disk: checkpoints, LoRAs, VAEs and embeddings under models/, with hashes and families.

User-supplied names resolve only through the lists built here, never by joining
a path (house rule 6). Hashes are cached by path, size and mtime, so a restart
never re-reads a file it has already hashed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from webui.config import Settings
from webui.fileio import atomic_write_text
from webui.detection.detect import Detection, detect_model
from webui.detection.families import FAMILIES
from webui.detection.folders import family_of, is_diffusers_folder, read_config, weights_file
from webui.detection.safetensors_header import read_safetensors_header
from webui.schemas import NotFound, WebUIError

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")
VAE_SUFFIXES = (".safetensors", ".pt", ".ckpt")
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")
CONTROLNET_SUFFIXES = (".safetensors", ".pth", ".bin", ".pt", ".ckpt")


# ---------------------------------------------------------------- hashing
class HashCache:
    """sha256 of files, remembered in a JSON file keyed by path, size and mtime."""

    def __init__(self, cache_file: Path | None):
        self._file = cache_file
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        if cache_file and cache_file.exists():
            try:
                self._entries = json.loads(cache_file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                log.warning("hash cache %s unreadable; starting a new one", cache_file)

    def sha256(self, path: Path) -> str:
        """The file's full sha256, from the cache when size and mtime still match."""
        return self._cached(str(path.resolve()), path, 0)

    def lora_sha256(self, path: Path) -> str:
        """A1111's LoRA hash: for .safetensors the sha256 of the bytes after the header (kohya's
        "addnet" hash, what Civitai looks LoRAs up by), for other files the whole file's sha256."""
        if path.suffix.lower() != ".safetensors":
            return self.sha256(path)
        with path.open("rb") as handle:
            skip = 8 + int.from_bytes(handle.read(8), "little")
        return self._cached("addnet:" + str(path.resolve()), path, skip)

    def _cached(self, key: str, path: Path, skip: int) -> str:
        """sha256 of the file's bytes from offset ``skip`` on, cached under ``key`` by size and mtime."""
        stat = path.stat()
        with self._lock:
            entry = self._entries.get(key)
            if entry and entry.get("size") == stat.st_size and entry.get("mtime") == stat.st_mtime:
                return entry["sha256"]
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            handle.seek(skip)
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        value = digest.hexdigest()
        with self._lock:
            self._entries[key] = {"size": stat.st_size, "mtime": stat.st_mtime, "sha256": value}
            self._save_locked()
        return value

    def _save_locked(self) -> None:
        if not self._file:
            return
        try:
            atomic_write_text(self._file, json.dumps(self._entries, indent=0))
        except OSError as exc:
            log.warning("could not write hash cache: %s", exc)


class LazySha256:
    """A file's sha256, read through the HashCache the first time someone asks (a rescan reads no file bodies)."""

    def __init__(self, hashes: HashCache, path: Path, lora: bool = False):
        self._hashes, self._path, self._lora = hashes, path, lora  # lora: A1111's LoRA hash (lora_sha256)
        self._value: str | None = None

    def __call__(self) -> str:
        if self._value is None:
            read = self._hashes.lora_sha256 if self._lora else self._hashes.sha256
            self._value = read(self._path)
        return self._value


def _digest(value) -> str:
    return value() if callable(value) else value


# ---------------------------------------------------------------- entries
@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint file as A1111 shows it: ``title`` is ``name [shorthash]``.

    ``digest`` is the sha256 or a :class:`LazySha256`: the file is hashed when its hash is first needed.
    """

    name: str  # path relative to its folder, e.g. "sub/model.safetensors"
    path: Path
    digest: object = field(compare=False, repr=False)
    detection: Detection
    metadata: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def sha256(self) -> str:
        return _digest(self.digest)

    @property
    def short_hash(self) -> str:
        return self.sha256[:10]

    @property
    def model_name(self) -> str:
        """File stem with folders, as A1111's ``Model:`` infotext field."""
        if self.path.is_dir():
            return self.name
        return os.path.splitext(self.name)[0].replace("\\", "/")

    @property
    def title(self) -> str:
        return f"{self.name} [{self.short_hash}]"

    @property
    def native_size(self) -> tuple[int, int]:
        """The resolution it was trained at: the file's ``modelspec.resolution``, else its family's."""
        text = self.metadata.get("modelspec.resolution", "")
        width, _, height = text.lower().partition("x")
        if width.strip().isdigit() and height.strip().isdigit():
            return int(width), int(height)
        family = FAMILIES.get(self.detection.family or "")
        size = family.default_size if family else 512
        return size, size

    @property
    def loadable(self) -> bool:
        # Case matters not: a pickle named x.SafeTensors is still judged by its (unreadable) safetensors header.
        return self.detection.kind == "checkpoint" or self.path.suffix.lower() != ".safetensors"


@dataclass(frozen=True)
class LoraInfo:
    name: str  # file stem relative to its folder, what <lora:NAME:w> refers to
    path: Path
    digest: object = field(compare=False, repr=False)  # A1111's LoRA hash (HashCache.lora_sha256) or LazySha256
    metadata: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def sha256(self) -> str:
        return _digest(self.digest)

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]

    @property
    def alias(self) -> str:
        return self.metadata.get("ss_output_name") or self.name

    @property
    def base_model(self) -> str:
        return self.metadata.get("ss_base_model_version") or self.metadata.get("ss_sd_model_name") or ""

    @property
    def trigger_words(self) -> list[str]:
        """Most frequent training tags (kohya's ss_tag_frequency), as A1111's LoRA cards show."""
        raw = self.metadata.get("ss_tag_frequency")
        if not raw:
            return []
        try:
            freq: dict[str, int] = {}
            for tags in json.loads(raw).values():
                for tag, count in tags.items():
                    freq[tag.strip()] = freq.get(tag.strip(), 0) + int(count)
        except (ValueError, AttributeError):
            return []
        return [tag for tag, _ in sorted(freq.items(), key=lambda kv: -kv[1])[:10]]


@dataclass(frozen=True)
class ControlNetInfo:
    """A ControlNet file in models/ControlNet, titled as the extension lists it: ``name [hash8]``."""

    name: str  # file stem relative to its folder
    path: Path
    sha256: str

    @property
    def short_hash(self) -> str:
        return self.sha256[:8]

    @property
    def title(self) -> str:
        return f"{self.name} [{self.short_hash}]"


@dataclass(frozen=True)
class FileInfo:
    """A VAE or embedding file."""

    name: str
    path: Path

    @property
    def stem(self) -> str:
        return Path(self.name).stem


# ---------------------------------------------------------------- catalog
def _scan(folders, suffixes) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in suffixes or path.name.startswith("."):
                continue
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            found.append((path.relative_to(folder).as_posix(), path))
    return found


def _diffusers_folders(folders) -> list[tuple[str, Path]]:
    found = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_dir():
            for index in sorted(folder.rglob("model_index.json")):
                if is_diffusers_folder(index.parent) and index.parent != folder:
                    found.append((index.parent.relative_to(folder).as_posix(), index.parent))
    return found


def _folder_detection(folder: Path) -> Detection:
    unet = read_config(folder / "unet")
    inpainting = unet.get("in_channels", 4) == 9
    return Detection("checkpoint", family=family_of(folder, unet), inpainting=inpainting,
                     unet_in_channels=unet.get("in_channels", 4), reason="diffusers folder")


def _header(path: Path) -> tuple[Detection, dict]:
    if path.suffix.lower() != ".safetensors":
        # Pickles cannot be inspected without loading them; the loader detects them safely.
        return Detection("checkpoint", reason="pickle: detected when loaded"), {}
    try:
        header = read_safetensors_header(path)
    except (OSError, ValueError) as exc:
        return Detection("unknown", reason=str(exc)), {}
    return detect_model(header.shapes), header.metadata


class Catalog:
    """The scanned lists of model files. ``refresh()`` rescans; lookups never touch other paths."""

    def __init__(self, settings: Settings, hash_cache: HashCache | None = None):
        self.settings = settings
        self.hashes = hash_cache or HashCache(settings.outdir / ".cache" / "hashes.json")
        self._lock = threading.RLock()
        self._checkpoints: list[CheckpointInfo] = []
        self._rejected: list[CheckpointInfo] = []
        self._loras: list[LoraInfo] = []
        self._vaes: list[FileInfo] = []
        self._embeddings: list[FileInfo] = []
        self._controlnets: list[ControlNetInfo] = []

    # ---- scanning
    def refresh(self) -> None:
        """Rescan every model folder."""
        self.refresh_checkpoints()
        self.refresh_loras()
        self.refresh_vaes()
        self.refresh_embeddings()
        self.refresh_controlnets()

    def refresh_checkpoints(self) -> None:
        accepted, rejected = [], []
        folders = _diffusers_folders(self.settings.ckpt_dirs)
        for name, path in folders:
            try:
                accepted.append(CheckpointInfo(name, path, self._folder_hash(path), _folder_detection(path)))
            except (OSError, ValueError, WebUIError) as exc:
                log.warning("diffusers folder %s unusable: %s", name, exc)
        roots = [path for _, path in folders]
        for name, path in _scan(self.settings.ckpt_dirs, CHECKPOINT_SUFFIXES):
            if any(root in path.parents for root in roots):
                continue  # a component file of a diffusers folder
            detection, metadata = _header(path)
            info = CheckpointInfo(name, path, LazySha256(self.hashes, path), detection, metadata)
            (accepted if info.loadable else rejected).append(info)
            if not info.loadable:
                log.warning("%s is not a loadable checkpoint: %s (%s)", name, detection.kind, detection.reason)
        with self._lock:
            self._checkpoints, self._rejected = accepted, rejected

    def _folder_hash(self, folder: Path) -> LazySha256:
        """A diffusers folder's identity: the sha256 of its UNet weights file (read when first needed)."""
        return LazySha256(self.hashes, weights_file(folder / "unet"))

    def refresh_loras(self) -> None:
        found = []
        for name, path in _scan(self.settings.lora_dirs, LORA_SUFFIXES):
            metadata = {}
            if path.suffix.lower() == ".safetensors":
                try:
                    metadata = read_safetensors_header(path).metadata
                except (OSError, ValueError) as exc:
                    log.warning("LoRA %s unreadable: %s", name, exc)
                    continue
            digest = LazySha256(self.hashes, path, lora=True)
            found.append(LoraInfo(os.path.splitext(name)[0], path, digest, metadata))
        with self._lock:
            self._loras = found

    def refresh_vaes(self) -> None:
        found = [FileInfo(n, p) for n, p in _scan([self.settings.model_folder("VAE")], VAE_SUFFIXES)]
        with self._lock:
            self._vaes = found

    def refresh_embeddings(self) -> None:
        found = [FileInfo(n, p) for n, p in _scan([self.settings.model_folder("embeddings")], EMBEDDING_SUFFIXES)]
        with self._lock:
            self._embeddings = found

    def refresh_controlnets(self) -> None:
        """Scan models/ControlNet (A1111's folder); the annotator weights under ``annotators/`` are not models."""
        folder = self.settings.model_folder("ControlNet")
        found = [ControlNetInfo(os.path.splitext(n)[0], p, self.hashes.sha256(p))
                 for n, p in _scan([folder], CONTROLNET_SUFFIXES) if not n.startswith("annotators/")]
        with self._lock:
            self._controlnets = found

    # ---- listings
    def checkpoints(self) -> list[CheckpointInfo]:
        with self._lock:
            return list(self._checkpoints)

    def rejected_checkpoints(self) -> list[CheckpointInfo]:
        """Files in the checkpoint folders that are not checkpoints (a LoRA, a VAE...)."""
        with self._lock:
            return list(self._rejected)

    def loras(self) -> list[LoraInfo]:
        with self._lock:
            return list(self._loras)

    def vaes(self) -> list[FileInfo]:
        with self._lock:
            return list(self._vaes)

    def embeddings(self) -> list[FileInfo]:
        with self._lock:
            return list(self._embeddings)

    def controlnets(self) -> list[ControlNetInfo]:
        with self._lock:
            return list(self._controlnets)

    # ---- lookups by user-supplied names
    def find_controlnet(self, name: str) -> ControlNetInfo:
        """A ControlNet by title ``name [hash]``, name, file name or hash (NotFound otherwise)."""
        wanted = str(name or "").strip().replace("\\", "/")
        base = wanted.split(" [")[0]
        for info in self.controlnets():
            if wanted in (info.title, info.name, info.short_hash, info.sha256, Path(info.path).name) or \
                    base in (info.name, Path(info.name).name):
                return info
        raise NotFound(f"ControlNet model not found: {name} (put it in models/ControlNet and refresh)")

    def find_checkpoint(self, name: str) -> CheckpointInfo:
        """Resolve a title, file name, model name or hash to a scanned checkpoint (NotFound otherwise)."""
        if not name:
            raise NotFound("no checkpoint named")
        wanted = name.strip().replace("\\", "/")  # A1111 on Windows writes sub\model
        base = wanted.split(" [")[0]
        # Names first, then hashes: a lookup by name hashes at most the file it names.
        for info in self.checkpoints():
            if wanted in (info.name, info.model_name, Path(info.name).name):
                return info
            if base in (info.name, info.model_name, Path(info.name).name) and wanted == info.title:
                return info
        for info in self.checkpoints():
            if wanted in (info.short_hash, info.sha256):
                return info
        # A1111 clients sometimes send "name [hash]" with a hash of another length.
        for info in self.checkpoints():
            if base in (info.name, info.model_name):
                return info
        for info in self.rejected_checkpoints():
            if wanted in (info.title, info.name, info.model_name):
                raise NotFound(f"{info.name} is not a checkpoint ({info.detection.kind}): {info.detection.reason}")
        raise NotFound(f"checkpoint not found: {name}")

    def default_checkpoint(self) -> CheckpointInfo | None:
        """The first real checkpoint, the shipped demo model only when nothing else is there."""
        items = self.checkpoints()
        if not items:
            return None
        non_demo = [c for c in items if not Path(c.name).name.startswith("demo-")]
        return (non_demo or items)[0]

    def find_lora(self, name: str) -> LoraInfo:
        name = name.replace("\\", "/")  # <lora:sub\name:1> from a Windows prompt
        for info in self.loras():
            if name in (info.name, info.alias, Path(info.name).name):
                return info
        raise NotFound(f"LoRA not found: {name}")

    def find_vae(self, name: str) -> FileInfo:
        for info in self.vaes():
            if name in (info.name, info.stem):
                return info
        raise NotFound(f"VAE not found: {name}")

    def vae_beside(self, checkpoint: CheckpointInfo) -> Path | None:
        """A1111's "Automatic" VAE: ``<checkpoint stem>.vae.*`` next to the checkpoint or in models/VAE."""
        stem = checkpoint.path.name.split(".")[0]
        for folder in (checkpoint.path.parent, self.settings.model_folder("VAE")):
            # File names compared case-insensitively, as Windows and macOS do: NAME.VAE.SafeTensors counts.
            files = {p.name.lower(): p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
            for suffix in VAE_SUFFIXES:
                for name in (f"{stem}.vae{suffix}", f"{stem}{suffix}"):
                    candidate = files.get(name.lower())
                    if candidate is not None and candidate.resolve() != checkpoint.path.resolve():
                        if any(candidate.resolve() == v.path.resolve() for v in self.vaes()) or folder == checkpoint.path.parent:
                            return candidate
        return None
