"""The overlay video of ``predict --overlay``: face box and a valence/arousal indicator on every frame."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from avaffect.files import atomic_path
from avaffect.media import iter_video_frames, probe


def draw_indicator(frame: np.ndarray, valence: float, arousal: float, box: np.ndarray | None) -> np.ndarray:
    """Draw (in place) the face box, two bars and a dot on the valence-arousal circumplex."""
    h, w = frame.shape[:2]
    if box is not None and np.all(np.isfinite(box)):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(frame, (x0, y0), (x1, y1), (0, 220, 0), 2)
    r = max(18, min(h, w) // 8)
    cx, cy = w - r - 8, h - r - 8
    cv2.circle(frame, (cx, cy), r, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.line(frame, (cx - r, cy), (cx + r, cy), (200, 200, 200), 1)
    cv2.line(frame, (cx, cy - r), (cx, cy + r), (200, 200, 200), 1)
    if np.isfinite(valence) and np.isfinite(arousal):
        dot = (int(cx + valence * r), int(cy - arousal * r))
        cv2.circle(frame, dot, max(3, r // 6), (255, 60, 60), -1, cv2.LINE_AA)
    bar_w, bar_h, x = max(60, w // 5), max(6, h // 40), 8
    for i, (label, value, color) in enumerate((("V", valence, (255, 160, 0)), ("A", arousal, (0, 160, 255)))):
        y = h - 8 - (2 - i) * (bar_h + 6)
        cv2.rectangle(frame, (x + 14, y), (x + 14 + bar_w, y + bar_h), (255, 255, 255), 1)
        if np.isfinite(value):
            mid = x + 14 + bar_w // 2
            end = int(mid + np.clip(value, -1, 1) * bar_w / 2)
            cv2.rectangle(frame, (min(mid, end), y + 1), (max(mid, end), y + bar_h - 1), color, -1)
        cv2.putText(frame, label, (x, y + bar_h), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


def write_overlay(src: str | Path, dst: str | Path, times: np.ndarray, pred: np.ndarray,
                  boxes: np.ndarray | None = None) -> Path:
    """Re-encode ``src`` to ``dst`` (H.264 + AAC mp4) with the indicator drawn; one output frame per
    input frame, at the input's timestamps; the audio track is kept (re-encoded to AAC)."""
    src, dst = Path(src), Path(dst)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(src)) as probe_c:
        vs = probe_c.streams.video[0]
        shown = probe(src)  # the displayed size: a rotated (portrait phone) video is turned upright
        width, height = shown.width, shown.height
        rate = vs.average_rate or Fraction(25, 1)
        audio_rate = probe_c.streams.audio[0].codec_context.sample_rate if probe_c.streams.audio else None
    with atomic_path(dst, suffix=dst.suffix) as tmp:  # FFmpeg picks the container by extension
        out = av.open(str(tmp), "w")
        try:
            vout = out.add_stream(codec, rate=rate)
            aout = None
            if audio_rate:  # every stream must exist before the first packet is muxed
                aout = out.add_stream("aac", rate=audio_rate)
                aout.layout = "mono"
            vout.width, vout.height = width + width % 2, height + height % 2
            vout.pix_fmt = "yuv420p"
            # millisecond timestamps in the encoder too: frames keep the source's own times (VFR-safe; with the
            # encoder's default 1/fps time base, irregular times would round onto equal timestamps)
            vout.codec_context.time_base = vout.time_base = Fraction(1, 1000)
            for i, (t, rgb) in enumerate(iter_video_frames(src)):
                k = min(i, len(pred) - 1)
                img = np.ascontiguousarray(rgb)
                if img.shape[0] != vout.height or img.shape[1] != vout.width:
                    img = cv2.copyMakeBorder(img, 0, vout.height - img.shape[0], 0, vout.width - img.shape[1],
                                             cv2.BORDER_REPLICATE)
                draw_indicator(img, float(pred[k, 0]), float(pred[k, 1]), None if boxes is None else boxes[k])
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = int(round(t * 1000))
                frame.time_base = Fraction(1, 1000)
                for packet in vout.encode(frame):
                    out.mux(packet)
            for packet in vout.encode():
                out.mux(packet)
            if aout is not None:
                _encode_audio(src, out, aout)
        finally:
            out.close()
    return dst


def _encode_audio(src: Path, out, aout) -> None:
    with av.open(str(src)) as inp:
        ain = inp.streams.audio[0]
        rate = aout.codec_context.sample_rate
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
        for frame in inp.decode(ain):
            frame.pts = None
            for f in resampler.resample(frame):
                for packet in aout.encode(f):
                    out.mux(packet)
        for f in resampler.resample(None):
            for packet in aout.encode(f):
                out.mux(packet)
        for packet in aout.encode():
            out.mux(packet)
