"""Align a face to the FFHQ 512x512 template from 5 landmarks, and paste a restored face back softly."""
from __future__ import annotations

import numpy as np
from PIL import Image

FACE_SIZE = 512
# Landmarks (left eye, right eye, nose tip, left and right mouth corners) of the
# FFHQ-aligned 512x512 face used by GFPGAN and CodeFormer; pixel centres at integers.
FFHQ_512_TEMPLATE = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.19360],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ]
)
BORDER_FILL = (135, 133, 132)  # grey outside the source image, as facexlib uses
MASK_MARGIN = 8  # template pixels at the crop's edge that never reach the output
MASK_FEATHER = 48  # template pixels over which the paste fades in


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation taking ``src`` points to ``dst``; a 3x3 matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, -y, 1.0, 0.0], [y, x, 0.0, 1.0]]
        rhs += [u, v]
    (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty], [0.0, 0.0, 1.0]])


def _pil_affine(matrix: np.ndarray) -> tuple:
    """PIL's AFFINE data (output -> input) for a matrix in integer-centre pixel coordinates."""
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    unshift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    m = shift @ matrix @ unshift
    return tuple(m[:2].reshape(-1))


def align_face(image: Image.Image, landmarks: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """The 512x512 aligned crop and the 3x3 matrix taking image coordinates to crop coordinates."""
    to_face = similarity_transform(landmarks, FFHQ_512_TEMPLATE)
    crop = image.convert("RGB").transform(
        (FACE_SIZE, FACE_SIZE),
        Image.Transform.AFFINE,
        data=_pil_affine(np.linalg.inv(to_face)),
        resample=Image.Resampling.BILINEAR,
        fillcolor=BORDER_FILL,
    )
    return crop, to_face


def face_mask() -> np.ndarray:
    """Soft 512x512 paste mask: 1 in the middle, smooth fall-off to exactly 0 at the crop's edge."""
    index = np.arange(FACE_SIZE, dtype=np.float64)
    edge = np.minimum(index, FACE_SIZE - 1 - index)
    ramp = np.clip((edge - MASK_MARGIN) / MASK_FEATHER, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep
    return np.minimum.outer(ramp, ramp).astype(np.float32)


def paste_face(image: Image.Image, face: Image.Image, to_face: np.ndarray) -> Image.Image:
    """Blend the restored 512x512 ``face`` back into ``image``; pixels outside the face region stay identical."""
    base = image.convert("RGB")
    from_face = np.linalg.inv(to_face)
    corners = np.array([[0, 0, 1], [FACE_SIZE - 1, 0, 1], [0, FACE_SIZE - 1, 1], [FACE_SIZE - 1, FACE_SIZE - 1, 1]], float)
    mapped = (from_face @ corners.T)[:2]
    x0 = max(0, int(np.floor(mapped[0].min())) - 1)
    y0 = max(0, int(np.floor(mapped[1].min())) - 1)
    x1 = min(base.width, int(np.ceil(mapped[0].max())) + 2)
    y1 = min(base.height, int(np.ceil(mapped[1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return base.copy()
    # Output pixel (x, y) of the box is image pixel (x + x0, y + y0).
    offset = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    data = _pil_affine(to_face @ offset)
    size = (x1 - x0, y1 - y0)
    warped = face.convert("RGB").transform(size, Image.Transform.AFFINE, data=data, resample=Image.Resampling.BILINEAR)
    mask_image = Image.fromarray(face_mask())
    mask = np.asarray(mask_image.transform(size, Image.Transform.AFFINE, data=data, resample=Image.Resampling.BILINEAR, fillcolor=0.0))
    region = np.asarray(base.crop((x0, y0, x1, y1)), dtype=np.float32)
    blended = region + (np.asarray(warped, dtype=np.float32) - region) * mask[..., None]
    blended = np.where(mask[..., None] > 0, np.clip(np.rint(blended), 0, 255), region).astype(np.uint8)
    result = base.copy()
    result.paste(Image.fromarray(blended, "RGB"), (x0, y0))
    return result
