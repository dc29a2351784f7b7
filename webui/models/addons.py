"""Per-job additions to the live model: LoRAs, textual-inversion embeddings and an external VAE.

Created by the ModelManager for the live checkpoint and detached before a switch.
Each ``prepare`` changes only what differs from the previous job.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from webui.catalog import Catalog, CheckpointInfo
from webui.config import Settings
from webui.models.loader import LoadedComponents
from webui.schemas import NotFound

log = logging.getLogger(__name__)


@dataclass
class AddonReport:
    """What a job got: for infotext and for the user's warnings."""

    lora_hashes: dict[str, str] = field(default_factory=dict)
    vae_name: str | None = None
    vae_hash: str | None = None
    warnings: list[str] = field(default_factory=list)


class ModelAddons:
    """LoRA patches, embeddings and VAE choice of one live model."""

    def __init__(self, settings: Settings, catalog: Catalog, model: LoadedComponents, checkpoint: CheckpointInfo):
        from webui.models.embeddings import EmbeddingSet
        from webui.models.lora import LoraPatcher

        self.settings = settings
        self.catalog = catalog
        self.model = model
        self.checkpoint = checkpoint
        self.patcher = LoraPatcher(model.unet, model.text_encoders, model.family)
        self.embeddings = EmbeddingSet()
        self.embedding_status = None
        self._original_vae = model.vae
        self._vae_path: Path | None = None
        self._embeddings_key = None

    def prepare(self, loras: list, vae_choice: str | None) -> AddonReport:
        """Apply this job's LoRAs (list of prompt LoRA specs with name/te_weight/unet_weight) and VAE."""
        report = AddonReport()
        specs = []
        for spec in loras:
            try:
                info = self.catalog.find_lora(spec.name)
            except NotFound:
                report.warnings.append(f"LoRA not found: {spec.name}")
                continue
            specs.append((info.name, info.path, float(spec.te_weight), float(spec.unet_weight)))
            report.lora_hashes[info.alias] = info.short_hash
        report.warnings.extend(self.patcher.apply(specs))
        self._install_embeddings()
        report.warnings.extend(self._set_vae(vae_choice, report))
        return report

    def expand_prompt(self, text: str) -> str:
        """Prompt text with embedding names expanded to their tokens."""
        return self.embeddings.expand_prompt(text)

    def embedding_hashes(self, *texts: str) -> dict[str, str]:
        """A1111's ``TI hashes``: name -> first 12 hex of the file's sha256, for embeddings the texts use."""
        paths = {f.stem: f.path for f in self.catalog.embeddings()}
        names = self.embeddings.used_in(" ".join(texts))
        return {name: self.catalog.hashes.sha256(paths[name])[:12] for name in names if name in paths}

    def _install_embeddings(self) -> None:
        files = [(f.stem, f.path) for f in self.catalog.embeddings()]
        key = tuple((name, str(path), path.stat().st_mtime) for name, path in files if path.exists())
        if key == self._embeddings_key:
            return
        self.embeddings.uninstall()
        self.embedding_status = self.embeddings.install(files, self.model.tokenizers, self.model.text_encoders,
                                                        self.model.family)
        self._embeddings_key = key

    def _set_vae(self, choice: str | None, report: AddonReport) -> list[str]:
        choice = choice or "Automatic"
        path: Path | None = None
        if choice == "Automatic":
            path = self.catalog.vae_beside(self.checkpoint)
        elif choice not in ("None", ""):
            try:
                path = self.catalog.find_vae(choice).path
            except NotFound as exc:
                return [str(exc) + "; using the checkpoint's own VAE"]
        if path != self._vae_path:
            if path is None:
                self.model.vae = self._original_vae
            else:
                from webui.models.vae import load_vae_file

                vae = load_vae_file(path, self._original_vae)
                param = next(self._original_vae.parameters())
                self.model.vae = vae.to(device=param.device, dtype=param.dtype)
            self._vae_path = path
        if path is not None:
            from webui.models.vae import vae_short_hash

            report.vae_name = path.name
            # Through the catalog's hash cache: a VAE file is read for its hash once, not on every job.
            report.vae_hash = vae_short_hash(path, getattr(self.catalog, "hashes", None))
        return []

    def detach(self) -> None:
        """Undo everything so the model (or its cached weights) is exactly as loaded."""
        self.patcher.clear()
        self.embeddings.uninstall()
        self.model.vae = self._original_vae
        self._vae_path = None
