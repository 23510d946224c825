"""``face_hog`` (video): HOG + a coarse intensity grid of each face crop; needs no downloaded weights."""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from avaffect.data.recording import Recording
from avaffect.errors import DataError
from avaffect.features.extractors.base import (
    Extractor,
    ExtractorParams,
    Positive,
    register_extractor,
)
from avaffect.features.face_stream import face_features
from avaffect.features.faces.crops import read_crop
from avaffect.features.faces.pipeline import face_field
from avaffect.features.faces.source import FACE_SOURCES, resolve_face_source

log = logging.getLogger(__name__)


def _exact_when_stacked(src: int, dst: int) -> bool:
    """Whether an area-interpolated resize of ``src`` rows to ``dst`` gives the same rows for crops stacked into one
    tall image as for each crop alone: a reduction (averaging, no interpolation across a crop's edge) by a ratio
    ``src / dst`` with a power-of-two denominator, so that OpenCV's area tables of row ``k * dst + j`` are those of
    row ``j`` shifted by ``k * src``, exactly (no rounding in ``(k * dst + j) * src / dst``)."""
    ratio = Fraction(src, dst)
    return src >= dst and ratio.denominator & (ratio.denominator - 1) == 0


def resize_stacked(gray: np.ndarray, size: int) -> np.ndarray:
    """``[n, h, w]`` uint8 crops resized to ``[n, size, size]`` (``cv2.INTER_AREA`` on each): one call on the crops
    stacked into one ``n * h`` x ``w`` image where that is exact (:func:`_exact_when_stacked`), else crop by crop."""
    n, h, w = gray.shape
    if (h, w) == (size, size):
        return gray
    if _exact_when_stacked(h, size):
        tall = cv2.resize(np.ascontiguousarray(gray).reshape(n * h, w), (size, n * size), interpolation=cv2.INTER_AREA)
        return tall.reshape(n, size, size)
    return np.stack([cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA) for g in gray])


@register_extractor
class FaceHOG(Extractor):
    """HOG + coarse intensity grid of each face crop.

    Each crop (``rec.crop_path(i)`` where ``rec.face_mask[i]``) is read as grayscale, resized to
    ``size x size`` (area interpolation), and described by an OpenCV HOG (``cell`` px cells,
    ``block`` px blocks moved by ``block_stride``, ``nbins`` orientations, L2-Hys block norm)
    followed by the crop downsampled to ``grid x grid`` in [0, 1]. Steps without a face, and
    steps whose crop file is missing or unreadable, are zeros. Missing files are logged; if every
    crop the mask promises is missing the recording fails (the crops folder is probably wrong).

    A recording without a crops folder (a raw video), or any recording with ``source="video"``, gets
    its crops from the face pipeline (:func:`avaffect.features.faces.load_face_crops` with ``detector``,
    ``crop_size``): detection, tracking, eye-levelling alignment; steps where no face is found are zeros.
    ``source="auto"`` (default) prefers the dataset's crops (Aff-Wild2 ``cropped_aligned``) when present.
    ``detect_every``: run the detector on every k-th frame, tracking in between (see the face ResNets);
    ``eyes_every``: Haar's eye search on every k-th detection of the face followed only.
    """

    name = "face_hog"
    modality = "video"
    version = "1"

    class Params(ExtractorParams):
        size: Positive = Field(64, description="side of the grey crop the HOG describes (px)")
        cell: Positive = Field(8, description="HOG cell (px)")
        block: Positive = Field(16, description="HOG block (px), a multiple of cell")
        block_stride: Positive = Field(16, description="HOG block stride (px)")
        nbins: Positive = Field(9, description="HOG orientation bins")
        grid: Positive = Field(8, description="the crop downsampled to grid x grid intensities")
        detector: str = face_field("detector")
        crop_size: int = face_field("crop_size", 112)
        source: Literal[FACE_SOURCES] = Field("auto", description="where faces come from: auto (a dataset's crops "
                                              "when present, else the video), crops or video")
        detect_every: int = face_field("detect_every")
        eyes_every: int = face_field("eyes_every")

        @model_validator(mode="after")
        def _geometry(self) -> FaceHOG.Params:
            if self.block % self.cell or self.block > self.size or (self.size - self.block) % self.block_stride:
                raise ValueError("need block a multiple of cell, block <= size and (size - block) a multiple of "
                                 f"block_stride; got size={self.size}, cell={self.cell}, block={self.block}, "
                                 f"block_stride={self.block_stride}")
            if self.grid > self.size:
                raise ValueError(f"grid ({self.grid}) must not exceed size ({self.size})")
            return self

    late_defaults = {"detect_every": 1, "eyes_every": 1}
    _transient = ("_hog",)
    BATCH = 256  # crops converted and resized per OpenCV call (the streaming chunk's size)

    @property
    def hog_dim(self) -> int:
        p = self.params
        blocks = (p["size"] - p["block"]) // p["block_stride"] + 1
        return blocks * blocks * (p["block"] // p["cell"]) ** 2 * p["nbins"]

    @property
    def dim(self) -> int:
        return self.hog_dim + self.params["grid"] ** 2

    def _descriptor(self) -> cv2.HOGDescriptor:
        hog = self.__dict__.get("_hog")
        if hog is None:
            p = self.params
            hog = cv2.HOGDescriptor(
                (p["size"], p["size"]),
                (p["block"], p["block"]),
                (p["block_stride"], p["block_stride"]),
                (p["cell"], p["cell"]),
                p["nbins"],
            )
            self._hog = hog
        return hog

    def describe_crop(self, gray: np.ndarray) -> np.ndarray:
        """Feature vector ``[dim]`` of one grayscale uint8 crop of any size (:meth:`describe_crops` of one)."""
        return self.describe_crops(np.asarray(gray)[None])[0]

    def describe_crops(self, gray: np.ndarray) -> np.ndarray:
        """``[n, dim]`` features of ``n`` grayscale uint8 crops of one size ``[n, h, w]``: each crop resized to
        ``size`` (area), its OpenCV HOG, then the crop area-resized to ``grid x grid`` in [0, 1]. The resizes run
        once on the crops stacked into one tall image where that equals resizing each, bit for bit
        (:func:`resize_stacked`); the HOG runs per crop (OpenCV's one-call HOG over windows of a tiled image gives
        the same numbers but was no faster here)."""
        size, grid = self.params["size"], self.params["grid"]
        n = len(gray)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        small = resize_stacked(gray, size)
        hog = self._descriptor()
        for i in range(n):
            out[i, : self.hog_dim] = hog.compute(small[i]).reshape(-1)
        out[:, self.hog_dim :] = resize_stacked(small, grid).reshape(n, -1) / 255.0
        return out

    def features_from_crops(self, crops: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Batches of at most ``BATCH`` face crops (a whole video's crops are not copied at once)."""
        out = np.zeros((len(mask), self.dim), dtype=np.float32)
        faces = np.flatnonzero(mask)
        for lo in range(0, len(faces), self.BATCH):
            idx = faces[lo:lo + self.BATCH]
            rgb = np.ascontiguousarray(np.asarray(crops)[idx])
            n, h, w = rgb.shape[:3]
            gray = cv2.cvtColor(rgb.reshape(n * h, w, 3), cv2.COLOR_RGB2GRAY).reshape(n, h, w)  # per pixel: exact
            out[idx] = self.describe_crops(gray)
        return out

    def extract(self, rec: Recording) -> np.ndarray:
        if resolve_face_source(rec, self.params["source"], self.params["detector"]) == "video":
            # from the raw video the detector decides which steps hold a face (where the recording allows one)
            return face_features(rec, self, "video")
        out = np.zeros((rec.num_steps, self.dim), dtype=np.float32)
        steps = np.flatnonzero(rec.face_mask)
        if len(steps) == 0:
            return out
        missing = 0
        for i in steps:
            gray = read_crop(rec.crop_path(int(i)), gray=True)  # described at the crop's own size
            if gray is None:
                missing += 1
                continue
            out[i] = self.describe_crop(gray)
        if missing == len(steps):
            raise DataError(
                rec.crops_dir,
                f"none of the {len(steps)} face crops of recording {rec.name} could be read "
                f"(e.g. {rec.crop_path(int(steps[0])).name})",
                "check the crops folder (Aff-Wild2 naming: 00001.jpg, 1-based) or re-run face cropping",
            )
        if missing:
            log.warning(
                "%s: %d of %d face crops missing or unreadable; zeros used", rec.name, missing, len(steps)
            )
        return out
