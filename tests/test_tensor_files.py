"""Every kind of model file goes through the one safe reader: a pickle that needs code is refused, naming the
file, and never runs, whether it poses as a checkpoint, LoRA, embedding, VAE, upscaler or diffusers component."""
import pickle

import pytest
import torch
from safetensors.torch import save_file

from webui.models.diffusers_folder import read_diffusers_folder
from webui.models.embeddings import read_embedding_file
from webui.models.loader import read_state_dict as read_checkpoint
from webui.models.lora import read_lora_file
from webui.models.vae import read_vae_state_dict
from webui.postprocess.loading import read_state_dict as read_spandrel_model
from webui.schemas import WebUIError
from webui.tensor_files import read_tensor_file, read_tensor_shapes


def write_code_pickle(path, marker):
    class RunsCode:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump({"state_dict": {"weight": RunsCode()}}, handle)
    return path


def diffusers_folder_with_code_unet(root, marker):
    folder = root / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text('{"in_channels": 4}')
    (folder / "text_encoder").mkdir()
    (folder / "text_encoder" / "config.json").write_text('{"hidden_act": "quick_gelu"}')
    write_code_pickle(folder / "unet" / "diffusion_pytorch_model.bin", marker)
    return folder


@pytest.mark.parametrize("reader, name", [
    (read_tensor_file, "evil.ckpt"),
    (read_checkpoint, "evil.ckpt"),
    (read_lora_file, "evil.pt"),
    (read_embedding_file, "evil.pt"),
    (read_vae_state_dict, "evil.pt"),
    (read_spandrel_model, "evil.pth"),
])
def test_a_pickle_that_needs_code_is_refused_by_every_reader_and_never_runs(tmp_path, reader, name):
    marker = tmp_path / "ran"
    path = write_code_pickle(tmp_path / name, marker)
    with pytest.raises(WebUIError, match=name):
        reader(path)
    assert not marker.exists()


def test_a_diffusers_folder_component_that_needs_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(WebUIError, match="diffusion_pytorch_model.bin"):
        read_diffusers_folder(diffusers_folder_with_code_unet(tmp_path, marker))
    assert not marker.exists()


def test_plain_tensors_and_metadata_are_read_from_both_formats(tmp_path):
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.float16)}
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata={"ss_output_name": "x"})
    torch.save(tensors, tmp_path / "x.pt")
    for name, metadata in (("x.safetensors", {"ss_output_name": "x"}), ("x.pt", {})):
        data, meta = read_tensor_file(tmp_path / name, mmap=True)
        assert meta == metadata and set(data) == {"a", "b"} and torch.equal(data["a"], tensors["a"])
    shapes = read_tensor_shapes(tmp_path / "x.safetensors")
    assert shapes["a"].shape == (2, 3) and shapes["b"].dtype == torch.float16 and shapes["a"].device.type == "meta"
    (tmp_path / "broken.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(WebUIError, match="broken.safetensors"):
        read_tensor_file(tmp_path / "broken.safetensors")
