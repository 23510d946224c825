"""Face alignment: a similarity transform that levels the eyes, then a square crop.

With eye points (from 2 eye landmarks or a 5-point set), the crop is rotated about the face-box
centre by the angle of the eye line, so that the eyes come out level; without them it is a plain
(axis-aligned) square crop of the box. In both cases the crop is centred on the box centre, its
side is ``max(box width, box height) * (1 + 2 * margin)`` source pixels, and it is resampled to
``size x size`` (the usual sizes are 48, 112 and 224). Parts of the square outside the frame are
black.

Coordinates: pixels, x to the right, y down. An angle is in degrees, positive when the eye on the
image's right lies lower than the one on the left (the face is turned clockwise on screen).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["STANDARD_SIZES", "eye_angle", "head_yaw", "crop_matrix", "apply_matrix", "align_crop"]

STANDARD_SIZES = (48, 112, 224)


def _left_right(eyes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two eye centres ``[2, 2]`` as (the image-left one, the image-right one)."""
    return (eyes[0], eyes[1]) if eyes[0, 0] <= eyes[1, 0] else (eyes[1], eyes[0])


def eye_angle(eyes: np.ndarray) -> float:
    """Angle (degrees) of the line from the image-left eye to the image-right eye; 0 when level."""
    left, right = _left_right(np.asarray(eyes, dtype=np.float64).reshape(2, 2))
    return math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))


def head_yaw(landmarks5: np.ndarray | None) -> float:
    """An approximate yaw (degrees; positive when the nose points to the image's right) from the eye centres and
    the nose tip of a 5-point set, NaN without them (Haar's 2-eye landmarks give none).

    The nose's offset from the eye midpoint along the eye line, ``s``, over half the projected eye distance,
    ``e``, read through a head whose nose tip stands half the eye distance in front of the eye plane (a
    round-number head model, not fitted): ``s / e = tan(yaw)``. A proxy for how far the face is turned, not a
    calibrated angle."""
    if landmarks5 is None:
        return float("nan")
    pts = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2)
    if not np.all(np.isfinite(pts[:3])):
        return float("nan")
    left, right = _left_right(pts[:2])
    axis = right - left
    half = float(np.hypot(*axis)) / 2.0
    if half < 1e-6:
        return float("nan")
    offset = float((pts[2] - (left + right) / 2.0) @ (axis / (2.0 * half)))
    return math.degrees(math.atan2(offset, half))


def crop_matrix(box: np.ndarray, size: int, margin: float = 0.15, angle: float = 0.0) -> np.ndarray:
    """The ``2 x 3`` affine matrix from frame pixels to crop pixels.

    A similarity transform: rotation by ``angle`` degrees (counter-clockwise on screen, undoing an
    eye line at ``angle``) about the box centre, scaling of the ``side * (1 + 2 * margin)`` square
    to ``size`` pixels, the box centre landing on the crop centre.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(4))
    side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + 2.0 * float(margin))
    scale = size / side
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    m = cv2.getRotationMatrix2D((cx, cy), float(angle), scale)
    m[0, 2] += size / 2.0 - cx
    m[1, 2] += size / 2.0 - cy
    return m


def apply_matrix(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``[N, 2]`` points with a ``2 x 3`` affine matrix."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ np.asarray(m, dtype=np.float64)[:, :2].T + np.asarray(m, dtype=np.float64)[:, 2]


def align_crop(
    rgb: np.ndarray, box: np.ndarray, size: int = 112, margin: float = 0.15, angle: float = 0.0
) -> np.ndarray:
    """The ``size x size`` crop of ``rgb`` around ``box``, rotated by ``angle`` (see :func:`crop_matrix`).

    Only the region the crop covers is resampled; large reductions go through ``pyrDown`` first, so
    a face much bigger than the crop is not aliased.
    """
    size = int(size)
    m = crop_matrix(box, size, margin, angle)
    H, W = rgb.shape[:2]
    # source-space bounds of the crop square (its corners mapped back), plus a pixel of slack
    inv = cv2.invertAffineTransform(m)
    corners = apply_matrix(inv, np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64))
    sx1 = max(0, int(math.floor(corners[:, 0].min())) - 2)
    sy1 = max(0, int(math.floor(corners[:, 1].min())) - 2)
    sx2 = min(W, int(math.ceil(corners[:, 0].max())) + 2)
    sy2 = min(H, int(math.ceil(corners[:, 1].max())) + 2)
    if sx2 <= sx1 or sy2 <= sy1:
        return np.zeros((size, size, 3), dtype=np.uint8)
    roi = rgb[sy1:sy2, sx1:sx2]
    m = m.copy()
    m[:, 2] += m[:, :2] @ np.array([sx1, sy1], dtype=np.float64)  # ROI pixel -> crop pixel
    scale = math.hypot(m[0, 0], m[0, 1])
    while scale < 0.5 and min(roi.shape[:2]) >= 4:
        roi = cv2.pyrDown(roi)
        m[:, :2] *= 2.0  # one ROI pixel now spans two original pixels
        scale *= 2.0
    return cv2.warpAffine(
        np.ascontiguousarray(roi),
        m,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
