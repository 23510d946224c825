"""The overlay video of ``predict --overlay``: face box and a valence/arousal indicator on every frame (with
``--faces all``: every person's box, number and values)."""

from __future__ import annotations

from collections import deque
from contextlib import ExitStack
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


#: a colour per person (RGB), in person order
PERSON_RGB = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (140, 86, 75), (227, 119, 194),
              (23, 190, 207), (188, 189, 34))


def draw_people(frame: np.ndarray, values: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Draw (in place) each person's box in their colour, with ``P<k>  V <v>  A <a>`` above it: ``values [P, 2]``
    (valence, arousal), ``boxes [P, 4]`` (NaN: that person is not on screen)."""
    for k, (box, (v, a)) in enumerate(zip(boxes, values, strict=True)):
        if not np.all(np.isfinite(box)):
            continue
        color = PERSON_RGB[k % len(PERSON_RGB)]
        x0, y0, x1, y1 = (int(round(c)) for c in box)
        cv2.rectangle(frame, (x0, y0), (x1, y1), color, 2)
        text = f"P{k + 1}  V {v:+.2f}  A {a:+.2f}" if np.isfinite(v) and np.isfinite(a) else f"P{k + 1}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(th + 4, y0 - 4)
        cv2.rectangle(frame, (x0, ty - th - 4), (x0 + tw + 4, ty + 2), color, -1)
        cv2.putText(frame, text, (x0 + 2, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


def va_columns(values: np.ndarray, targets: list[str] | tuple[str, ...]) -> np.ndarray:
    """``[n, 2]`` (valence, arousal) of predictions whose columns are ``targets``; a target not predicted is NaN
    (its indicator is not drawn)."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    out = np.full((len(values), 2), np.nan)
    for j, name in enumerate(("valence", "arousal")):
        if name in targets:
            out[:, j] = values[:, list(targets).index(name)]
    return out


class OverlayEncoder:
    """The overlay video being written: ``write(t, rgb, valence, arousal, box)`` per source frame, in order, then
    ``close()`` (adds the source's audio, re-encoded to AAC, and moves the file into place); ``abort()`` (or an
    exception inside ``with``) removes the partial file. H.264 (``libx264``) + AAC mp4 at the source's frame
    times (millisecond time base: variable frame rates are kept), its displayed size (even-sized)."""

    def __init__(self, src: str | Path, dst: str | Path) -> None:
        self.src, self.dst = Path(src), Path(dst)
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        with av.open(str(self.src)) as probe_c:
            vs = probe_c.streams.video[0]
            shown = probe(self.src)  # the displayed size: a rotated (portrait phone) video is turned upright
            rate = vs.average_rate or Fraction(25, 1)
            audio_rate = probe_c.streams.audio[0].codec_context.sample_rate if probe_c.streams.audio else None
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.dst, suffix=self.dst.suffix))  # FFmpeg: format by suffix
        self._out = av.open(str(tmp), "w")
        self._stack.callback(self._out.close)
        # x264's "veryfast" preset: a preview, not an archive; about 3x less encoding time than its default
        # "medium" at a visually equal quality (crf 23) — the encoder dominated predict --overlay's time
        options = {"preset": "veryfast", "crf": "23"} if codec == "libx264" else {}
        self._vout = self._out.add_stream(codec, rate=rate, options=options)
        self._aout = None
        if audio_rate:  # every stream must exist before the first packet is muxed
            self._aout = self._out.add_stream("aac", rate=audio_rate)
            self._aout.layout = "mono"
        self._vout.width, self._vout.height = shown.width + shown.width % 2, shown.height + shown.height % 2
        self._vout.pix_fmt = "yuv420p"
        # millisecond timestamps in the encoder too: frames keep the source's own times (VFR-safe; with the
        # encoder's default 1/fps time base, irregular times would round onto equal timestamps)
        self._vout.codec_context.time_base = self._vout.time_base = Fraction(1, 1000)
        self.frames = 0

    def write(self, t: float, rgb: np.ndarray, valence: float, arousal: float, box: np.ndarray | None) -> None:
        self.write_drawn(t, rgb, lambda img: draw_indicator(img, float(valence), float(arousal), box))

    def write_drawn(self, t: float, rgb: np.ndarray, draw) -> None:
        """Encode ``rgb`` at time ``t`` after ``draw(image)`` drew on a copy of it."""
        vout = self._vout
        img = np.ascontiguousarray(rgb)
        if img.shape[0] != vout.height or img.shape[1] != vout.width:
            img = cv2.copyMakeBorder(img, 0, vout.height - img.shape[0], 0, vout.width - img.shape[1],
                                     cv2.BORDER_REPLICATE)
        else:
            img = img.copy()  # drawn on: never the caller's frame
        draw(img)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = int(round(t * 1000))
        frame.time_base = Fraction(1, 1000)
        for packet in vout.encode(frame):
            self._out.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        for packet in self._vout.encode():
            self._out.mux(packet)
        if self._aout is not None:
            _encode_audio(self.src, self._out, self._aout)
        self._stack.close()  # closes the container, then moves the file into place
        return self.dst

    def abort(self) -> None:
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)  # atomic_path removes the partial file

    def __enter__(self) -> OverlayEncoder:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None:
            self.abort()


def write_overlay(src: str | Path, dst: str | Path, times: np.ndarray, pred: np.ndarray,
                  boxes: np.ndarray | None = None) -> Path:
    """Re-encode ``src`` to ``dst`` (H.264 + AAC mp4) with the indicator drawn; one output frame per
    input frame, at the input's timestamps; the audio track is kept (re-encoded to AAC). A second decode of the
    video: :class:`StreamingOverlay` writes the same file during predict's own pass."""
    with OverlayEncoder(src, dst) as enc:
        for i, (t, rgb) in enumerate(iter_video_frames(src)):
            k = min(i, len(pred) - 1)
            enc.write(t, rgb, pred[k, 0], pred[k, 1], None if boxes is None else boxes[k])
        return enc.close()


def write_people_overlay(src: str | Path, dst: str | Path, values: np.ndarray, boxes: np.ndarray) -> Path:
    """:func:`write_overlay` for several people: ``values [P, T, 2]`` (valence, arousal), ``boxes [P, T, 4]``; frame
    ``i`` takes step ``min(i, T - 1)`` (a second decode of the video)."""
    n = values.shape[1]
    with OverlayEncoder(src, dst) as enc:
        for i, (t, rgb) in enumerate(iter_video_frames(src)):
            k = min(i, n - 1)
            enc.write_drawn(t, rgb, lambda img, k=k: draw_people(img, values[:, k], boxes[:, k]))
        return enc.close()


class StreamingOverlay:
    """The overlay written during predict's streaming pass, from the frames that pass decodes (no second decode).

    A frame can be drawn only once its step's prediction is final, i.e. once every window covering it has run,
    which happens up to a window length plus a chunk of steps after the frame was decoded. Until then frames wait
    in memory as JPEG (quality ``jpeg_quality``; about 23 KB each at 640 x 360 instead of 690 KB raw, 1.6 ms a
    frame to encode and decode here), so memory stays flat; the JPEG round trip is one more lossy generation
    before H.264 (crf 23) — at quality 90 it is not visible,
    but the overlay is not bit-identical to :func:`write_overlay`'s. Feed ``frame(t, rgb)`` for every decoded frame
    and ``final(lo, values, boxes)`` as steps become final (``values [n, 2]``: valence, arousal); frame ``i`` takes
    step ``min(i, num_steps - 1)``, as :func:`write_overlay` does."""

    def __init__(self, src: str | Path, dst: str | Path, num_steps: int, jpeg_quality: int = 90) -> None:
        self.encoder = OverlayEncoder(src, dst)
        self.num_steps, self.quality = int(num_steps), int(jpeg_quality)
        self._frames: deque[tuple[int, float, np.ndarray]] = deque()
        self._values: dict[int, tuple[float, float, np.ndarray | None]] = {}
        self._decoded = 0
        self._final = 0  # steps [0, _final) are final
        self.peak_buffered = 0

    def frame(self, t: float, rgb: np.ndarray) -> None:
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        self._frames.append((self._decoded, float(t), jpg))
        self._decoded += 1
        self.peak_buffered = max(self.peak_buffered, len(self._frames))
        self._drain()

    def final(self, lo: int, values: np.ndarray, boxes: np.ndarray) -> None:
        for j in range(len(values)):
            box = boxes[j] if np.all(np.isfinite(boxes[j])) else None
            self._values[lo + j] = (float(values[j, 0]), float(values[j, 1]) if values.shape[1] > 1 else np.nan, box)
        self._final = max(self._final, lo + len(values))
        self._drain()

    def _drain(self) -> None:
        while self._frames:
            i, t, jpg = self._frames[0]
            k = min(i, self.num_steps - 1)
            if k >= self._final:
                return
            self._frames.popleft()
            v, a, box = self._values[k]
            self.encoder.write(t, cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), v, a, box)
            if k < i or i == self.num_steps - 1:  # the last step serves the frames after it: keep its value
                continue
            self._values.pop(k, None)

    def close(self) -> Path:
        self._final = self.num_steps
        self._drain()
        if self._frames:  # cannot happen once every step is final
            raise RuntimeError(f"{len(self._frames)} overlay frames left undrawn")
        return self.encoder.close()

    def abort(self) -> None:
        self.encoder.abort()


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
