"""Random-weight ControlNet annotator files in the layouts of lllyasviel's Annotators repository.

Each file holds what the real one holds: the network's tensors under the names its
loader reads (openpose's without their first name part, pidinet's under
``state_dict`` with ``module.`` prefixes), saved with torch.save.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch


def _tensors(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _lineart():
    from controlnet_aux.lineart import Generator

    return _tensors(Generator(3, 1, 3))


def _hed():
    from controlnet_aux.hed import ControlNetHED_Apache2

    return _tensors(ControlNetHED_Apache2())


def _pose(name: str):
    from controlnet_aux.open_pose.model import bodypose_model, handpose_model

    model = bodypose_model() if name == "body" else handpose_model()
    return {k.split(".", 1)[1]: v for k, v in _tensors(model).items()}  # the loader adds the first part back


def _face():
    from controlnet_aux.open_pose.face import FaceNet

    return _tensors(FaceNet())


def _pidinet():
    from controlnet_aux.pidi.model import pidinet

    return {"state_dict": {f"module.{k}": v for k, v in _tensors(pidinet()).items()}}


def _mlsd():
    from controlnet_aux.mlsd.models.mbv2_mlsd_large import MobileV2_MLSD_Large

    return _tensors(MobileV2_MLSD_Large())


def _lineart_anime():
    import functools

    from controlnet_aux.lineart_anime import UnetGenerator

    norm = functools.partial(torch.nn.InstanceNorm2d, affine=False, track_running_stats=False)
    return {f"module.{k}": v for k, v in _tensors(UnetGenerator(3, 1, 8, 64, norm_layer=norm,
                                                                use_dropout=False)).items()}


def _normal_bae():
    import types

    from controlnet_aux.normalbae.nets.NNET import NNET

    args = types.SimpleNamespace(mode="client", architecture="BN", pretrained="scannet", sampling_ratio=0.4,
                                 importance_ratio=0.7)
    return {"model": {f"module.{k}": v for k, v in _tensors(NNET(args)).items()}}


def _midas():
    from controlnet_aux.midas.midas.dpt_depth import DPTDepthModel

    return _tensors(DPTDepthModel(path=None, backbone="vitb_rn50_384", non_negative=True))


WRITERS = {
    "sk_model.pth": _lineart, "sk_model2.pth": _lineart, "ControlNetHED.pth": _hed,
    "body_pose_model.pth": lambda: _pose("body"), "hand_pose_model.pth": lambda: _pose("hand"),
    "facenet.pth": _face, "table5_pidinet.pth": _pidinet, "mlsd_large_512_fp32.pth": _mlsd,
    "dpt_hybrid-midas-501f0c75.pt": _midas, "netG.pth": _lineart_anime, "scannet.pt": _normal_bae,
}


def write_annotator(folder: Path, name: str, seed: int = 0) -> Path:
    """Write annotator file ``name`` (one of WRITERS) with random weights into ``folder``."""
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm and controlnet_aux deprecation notes
        state = WRITERS[name]()
    path = folder / name
    torch.save(state, str(path))
    return path
