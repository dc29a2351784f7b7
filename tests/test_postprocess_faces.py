"""Face restoration on scikit-image's astronaut photo with random-weight GFPGAN v1.4 and CodeFormer files."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data

from webui.config import Settings
from webui.engine.engine import Engine
from webui.catalog import Catalog
from webui.models.manager import ModelManager
from webui.postprocess.face_detection import Face
from webui.postprocess.face_align import FFHQ_512_TEMPLATE, align_face, paste_face
from webui.postprocess.faces import FaceRestorers
from webui.schemas import ExtrasRequest, GenerationRequest, JobInterrupted, NotFound, NullControl
from webui.postprocess.extras import run_extras
from webui.postprocess.upscalers import UpscalerRegistry

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """GFPGANv1.4.pth and a CodeFormer file in the original releases' layout (weights under ``params_ema``)."""
    from spandrel.architectures.GFPGAN import GFPGAN
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    root = tmp_path_factory.mktemp("models")
    (root / "GFPGAN").mkdir()
    (root / "Codeformer").mkdir()
    torch.manual_seed(0)
    gfpgan = GFPGAN(
        out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
        num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True,
    )
    torch.save({"params_ema": gfpgan.state_dict()}, root / "GFPGAN" / "GFPGANv1.4.pth")
    del gfpgan
    # Fewer transformer layers than the release (9) keep it small; spandrel reads the count from the keys.
    codeformer = CodeFormer(
        dim_embd=512, n_head=8, n_layers=1, codebook_size=1024, latent_size=256,
        connect_list=["32", "64", "128", "256"], fix_modules=["quantize", "generator"],
    )
    # Any file name works as long as spandrel detects CodeFormer.
    save_file({k: v.contiguous() for k, v in codeformer.state_dict().items()}, str(root / "Codeformer" / "my-codeformer.safetensors"))
    del codeformer
    # A1111 users keep facexlib's detector weights here too; they must not confuse the scan.
    (root / "GFPGAN" / "detection_Resnet50_Final.pth").write_bytes(b"not a restorer")
    return root


@pytest.fixture(scope="module")
def faces(models_dir):
    return FaceRestorers(Settings(models_dir=models_dir, device="cpu", precision="fp32"))


@pytest.fixture(scope="module")
def astronaut():
    return Image.fromarray(data.astronaut())


def far_from_face(image, box, factor=1.5):
    """Boolean map of pixels farther than ``factor`` box sizes from the face centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    size = max(box[2] - box[0], box[3] - box[1])
    ys, xs = np.mgrid[0:image.height, 0:image.width]
    return np.hypot(xs - cx, ys - cy) > factor * size


def test_restorers_listed_from_their_folders(faces, models_dir):
    assert faces.names() == ["CodeFormer", "GFPGAN"]
    assert faces.model_path("GFPGAN").name == "GFPGANv1.4.pth"
    assert faces.model_path("CodeFormer").name == "my-codeformer.safetensors"


def test_missing_weights_say_which_file_goes_where(tmp_path):
    empty = FaceRestorers(Settings(models_dir=tmp_path, device="cpu"))
    assert empty.names() == []
    with pytest.raises(NotFound) as error:
        empty.restore(Image.new("RGB", (8, 8)), "GFPGAN", 1.0)
    assert "GFPGANv1.4.pth" in str(error.value) and str(tmp_path / "GFPGAN") in str(error.value)
    with pytest.raises(NotFound, match="codeformer-v0.1.0.pth"):
        empty.restore(Image.new("RGB", (8, 8)), "CodeFormer", 1.0)
    with pytest.raises(NotFound):
        empty.restore(Image.new("RGB", (8, 8)), "RestoreFormer++", 1.0)


def test_one_face_found_with_landmarks_on_it(faces, astronaut):
    found = faces.detect(astronaut)
    assert len(found) == 1
    x0, y0, x1, y1 = found[0].box
    assert 150 < x0 < 220 and 230 < x1 < 300 and 30 < y0 < 100 and 140 < y1 < 210
    left_eye, right_eye, nose, mouth_left, mouth_right = found[0].landmarks
    assert left_eye[0] < nose[0] < right_eye[0]
    assert left_eye[1] < nose[1] < mouth_left[1]


def test_alignment_puts_landmarks_on_the_ffhq_template(faces, astronaut):
    landmarks = faces.detect(astronaut)[0].landmarks
    crop, to_face = align_face(astronaut, landmarks)
    assert crop.size == (512, 512)
    mapped = (to_face @ np.c_[landmarks, np.ones(5)].T)[:2].T
    assert np.abs(mapped - FFHQ_512_TEMPLATE).max() < 25  # 5 points, 4 degrees of freedom: a small residual
    # An identity "restorer" pastes back (almost) the same picture: alignment and paste-back agree.
    back = paste_face(astronaut, crop, to_face)
    diff = np.abs(np.asarray(back, dtype=np.int16) - np.asarray(astronaut, dtype=np.int16))
    assert diff.mean() < 1.0 and np.median(diff) == 0


@pytest.mark.parametrize("name", ["GFPGAN", "CodeFormer"])
def test_restore_changes_the_face_and_nothing_far_from_it(faces, astronaut, name):
    box = faces.detect(astronaut)[0].box
    out = faces.restore(astronaut, name, visibility=1.0, codeformer_weight=0.5)
    assert out.size == astronaut.size and out.mode == "RGB"
    before, after = np.asarray(astronaut), np.asarray(out)
    far = far_from_face(astronaut, box)
    assert np.array_equal(before[far], after[far])
    x0, y0, x1, y1 = (int(v) for v in box)
    face_diff = np.abs(before[y0:y1, x0:x1].astype(int) - after[y0:y1, x0:x1].astype(int))
    assert face_diff.mean() > 5  # random weights: the face region is visibly replaced


def test_visibility_zero_and_no_faces_leave_the_image_alone(faces, astronaut):
    assert np.array_equal(np.asarray(faces.restore(astronaut, "GFPGAN", 0.0)), np.asarray(astronaut))
    sky = Image.new("RGB", (64, 48), (90, 140, 220))
    assert np.array_equal(np.asarray(faces.restore(sky, "GFPGAN", 1.0)), np.asarray(sky))


def test_extras_restore_then_upscale_writes_a1111_fields(faces, models_dir, astronaut):
    small = astronaut.resize((256, 256), Image.Resampling.LANCZOS)
    request = ExtrasRequest(images=[small], upscaler_1="Lanczos", upscaling_resize=1.5, gfpgan_visibility=0.5, upscale_first=False)
    upscalers = UpscalerRegistry(Settings(models_dir=models_dir, device="cpu"))
    [(image, info)] = run_extras(request, upscalers, faces)
    assert image.size == (384, 384)
    assert info == {"GFPGAN visibility": 0.5, "Postprocess upscale by": 1.5, "Postprocess upscaler": "Lanczos"}
    assert list(info)[0] == "GFPGAN visibility"  # restore ran first


# ------------------------------------------------------------------ interrupt between faces
def two_astronauts() -> Image.Image:
    """Two copies of the astronaut side by side: two faces for the detector."""
    single = Image.fromarray(data.astronaut()).resize((256, 256), Image.Resampling.LANCZOS)
    pair = Image.new("RGB", (512, 256))
    pair.paste(single, (0, 0))
    pair.paste(single, (256, 0))
    return pair


def count_restorer_runs(faces: FaceRestorers, name: str) -> list:
    """A list that grows by one each time the restorer model runs on a face."""
    runs = []
    faces._model(FaceRestorers._spec(name)).model.register_forward_hook(lambda *args: runs.append(1))
    return runs


class StopAfterFaces(NullControl):
    """A JobControl whose user presses Interrupt once ``limit`` faces have been restored."""

    def __init__(self, runs: list, limit: int):
        self.runs, self.limit = runs, limit

    def interrupted(self) -> bool:
        return len(self.runs) >= self.limit


def test_extras_stop_between_faces_and_keep_finished_images(models_dir):
    faces = FaceRestorers(Settings(models_dir=models_dir, device="cpu", precision="fp32"))
    assert len(faces.detect(two_astronauts())) == 2
    runs = count_restorer_runs(faces, "GFPGAN")
    sky = Image.new("RGB", (64, 48), (90, 140, 220))  # no face: finished before the interrupt
    request = ExtrasRequest(images=[sky, two_astronauts()], upscaler_1="None", gfpgan_visibility=1.0)
    upscalers = UpscalerRegistry(Settings(models_dir=models_dir, device="cpu"))
    with pytest.raises(JobInterrupted) as stopped:
        run_extras(request, upscalers, faces, StopAfterFaces(runs, 1))
    assert len(runs) == 1  # the second face of the second image was never restored
    [(kept, info)] = stopped.value.partial
    assert np.array_equal(np.asarray(kept), np.asarray(sky)) and info == {"GFPGAN visibility": 1.0}


class TwoFixedFaces:
    """A detector reporting two faces at fixed places: a tiny random checkpoint paints no real face."""

    def detect(self, image):
        eyes_nose_mouth = np.array([[20, 24], [44, 24], [32, 34], [23, 44], [41, 44]], dtype=np.float64)
        return [Face(box=(8, 8, 56, 56), landmarks=eyes_nose_mouth, score=1.0)] * 2


def test_generation_restore_faces_stops_between_faces(models_dir, tiny_checkpoint_dir, tmp_path):
    (models_dir / "Stable-diffusion").mkdir(exist_ok=True)
    shutil.copy(tiny_checkpoint_dir / "tiny-sd1.safetensors", models_dir / "Stable-diffusion")
    settings = Settings(models_dir=models_dir, outdir=tmp_path, device="cpu", precision="fp32", save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    faces = FaceRestorers(settings, detector=TwoFixedFaces())
    runs = count_restorer_runs(faces, "GFPGAN")
    engine = Engine(settings, catalog, ModelManager(settings, catalog), faces=faces)
    request = GenerationRequest(prompt="a face", steps=2, width=64, height=64, seed=1, sampler_name="Euler",
                                restore_faces=True, face_restorer="GFPGAN")
    with pytest.raises(JobInterrupted) as stopped:
        engine.generate(request, StopAfterFaces(runs, 1))
    assert len(runs) == 1  # interrupted after the first face, before the second
    assert stopped.value.partial.images == []


def test_generation_keeps_the_image_when_restoration_fails(tiny_checkpoint_dir, tmp_path):
    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(tiny_checkpoint_dir / "tiny-sd1.safetensors", models / "Stable-diffusion")
    settings = Settings(models_dir=models, outdir=tmp_path / "out", device="cpu", precision="fp32", save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    engine = Engine(settings, catalog, ModelManager(settings, catalog), faces=FaceRestorers(settings))
    request = GenerationRequest(prompt="a face", steps=2, width=64, height=64, seed=1, sampler_name="Euler",
                                restore_faces=True, face_restorer="CodeFormer")  # no weights installed
    result = engine.generate(request)
    assert len(result.images) == 1
    warning = next(w for w in result.warnings if w.startswith("Face restoration failed"))
    assert "codeformer-v0.1.0.pth" in warning and "Codeformer" in warning
