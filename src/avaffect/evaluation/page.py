"""The page of ``predict --html``: one self-contained HTML file per video with the video (its overlay: face box
and valence/arousal indicator), the valence/arousal traces as a chart whose cursor follows playback (click the
chart to seek), the frames without a face shaded, and the summary with what the numbers mean.

Self-contained: the video is embedded as a base64 ``data:`` URI and the chart is drawn by a few lines of inline
JavaScript into an SVG, no library and no network. A video larger than ``embed_limit_mb`` is not embedded: the
page then plays the overlay file beside it (same folder) and says so. :func:`write_index` writes the folder's
``index.html`` linking every page.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avaffect.evaluation.explain import EXPLAIN_CHART, MODALITIES, contribution_column, last_gate_columns
from avaffect.files import atomic_write_text

__all__ = ["EMBED_LIMIT_MB", "page_html", "write_page", "write_index"]

EMBED_LIMIT_MB = 200.0

_SUMMARY_ROWS = (
    ("video", "video"), ("model", "model"), ("trained_on", "trained on"), ("frames", "frames"),
    ("duration_s", "duration (s)"), ("fps", "fps"), ("face_fraction", "face found in"), ("audio", "audio"),
    ("valence_mean", "valence mean"), ("valence_std", "valence std"), ("arousal_mean", "arousal mean"),
    ("arousal_std", "arousal std"), ("realtime_factor", "x real time"), ("checkpoint", "checkpoint"),
)

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1000px;color:#222}
h1{font-size:1.3em} .meaning{padding:.6em .8em;border-radius:4px;background:#eef4ff}
.meaning.synthetic{background:#ffe9e6;border:1px solid #d33;font-weight:600}
video{width:100%;max-height:480px;background:#000} #chart{width:100%;height:auto;cursor:crosshair;display:block}
table{border-collapse:collapse;margin-top:1em} td{padding:2px 10px;border-bottom:1px solid #eee;font-size:.9em}
.legend span{margin-right:1.2em} .v{color:#e08000} .a{color:#0070d0} .nf{color:#888}
.warn{color:#b00}
"""

# The chart: x = time, y = value in [-1, 1]; face-less runs shaded; the cursor follows the video's clock.
_SCRIPT = """
(function(){
const D = JSON.parse(document.getElementById('avaffect-data').textContent);
const svg = document.getElementById('chart'), video = document.getElementById('video');
const NS = 'http://www.w3.org/2000/svg', W = 1000, H = 260, L = 40, R = 10, T = 10, B = 30;
const t0 = D.time.length ? D.time[0] : 0, t1 = D.time.length ? Math.max(D.time[D.time.length-1], t0 + 1e-6) : 1;
const x = t => L + (t - t0) / (t1 - t0) * (W - L - R), y = v => T + (1 - v) / 2 * (H - T - B);
function el(name, attrs, parent){ const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]); (parent || svg).appendChild(e); return e; }
svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
const dt = D.time.length > 1 ? (t1 - t0) / (D.time.length - 1) : 1;
let start = null;
for (let i = 0; i <= D.face.length; i++) {           // shade each run of frames without a face
  const noface = i < D.face.length && !D.face[i];
  if (noface && start === null) start = i;
  if (!noface && start !== null) {
    const a = D.time[start] - dt / 2, b = D.time[i - 1] + dt / 2;
    el('rect', {x: x(Math.max(a, t0)), y: T, width: Math.max(1, x(Math.min(b, t1)) - x(Math.max(a, t0))),
                height: H - T - B, fill: '#ddd', class: 'noface'});
    start = null;
  }
}
for (const [color, lo, hi] of (D.bands || [])) {   // an ensemble's spread: value ± std, where both are finite
  let up = [], down = [];
  const flush = () => { if (up.length) el('polygon', {points: up.concat(down.reverse()).join(' '), fill: color,
                          'fill-opacity': 0.2, stroke: 'none', class: 'band'}); up = []; down = []; };
  lo.forEach((v, i) => { if (v === null || hi[i] === null) { flush(); return; }
    const X = x(D.time[i]).toFixed(2);
    up.push(X + ',' + y(Math.max(-1, Math.min(1, hi[i]))).toFixed(2));
    down.push(X + ',' + y(Math.max(-1, Math.min(1, v))).toFixed(2)); });
  flush();
}
for (const v of [-1, -0.5, 0, 0.5, 1]) {
  el('line', {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: v === 0 ? '#999' : '#eee'});
  el('text', {x: L - 6, y: y(v) + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#666'}).textContent = v;
}
const step = Math.pow(10, Math.floor(Math.log10(t1 - t0))) || 1;
for (let s = Math.ceil(t0 / step) * step; s <= t1 + 1e-9; s += step)
  el('text', {x: x(s), y: H - 10, 'text-anchor': 'middle', 'font-size': 11, fill: '#666'}).textContent =
    (Math.round(s * 100) / 100) + ' s';
function trace(values, color, name){       // a polyline per run of finite values (NaN: no value there)
  let pts = [];
  const flush = () => { if (pts.length) el('polyline', {points: pts.join(' '), fill: 'none', stroke: color,
                          'stroke-width': 1.6, class: 'trace ' + name}); pts = []; };
  values.forEach((v, i) => { if (v === null) flush(); else pts.push(x(D.time[i]).toFixed(2) + ',' +
                                                                  y(Math.max(-1, Math.min(1, v))).toFixed(2)); });
  flush();
}
const SERIES = D.series || [['valence', '#e08000', D.valence], ['arousal', '#0070d0', D.arousal]];
for (const [name, color, values, dash] of SERIES) if (values) {
  const before = svg.childNodes.length; trace(values, color, name);
  if (dash) for (let k = before; k < svg.childNodes.length; k++)
    svg.childNodes[k].setAttribute('stroke-dasharray', dash); }
const cursor = el('line', {id: 'cursor', x1: x(t0), x2: x(t0), y1: T, y2: H - B, stroke: '#d00', 'stroke-width': 1.5});
const readout = document.getElementById('readout');
function nearest(t){ let lo = 0, hi = D.time.length - 1;
  while (hi - lo > 1) { const m = (lo + hi) >> 1; if (D.time[m] <= t) lo = m; else hi = m; }
  return (hi >= 0 && Math.abs(D.time[hi] - t) < Math.abs(D.time[lo] - t)) ? hi : lo; }
function fmt(v){ return v === null || v === undefined ? '–' : v.toFixed(3); }
function update(){
  const t = Math.max(t0, Math.min(t1, video.currentTime)), X = x(t).toFixed(2);
  cursor.setAttribute('x1', X); cursor.setAttribute('x2', X);
  if (D.time.length) { const i = nearest(t);
    readout.textContent = 't = ' + t.toFixed(2) + ' s' + SERIES.filter(q => q[2]).map(q => '   ' + q[0] + ' ' +
      fmt(q[2][i])).join('') + (D.face[i] ? '' : '   (no face)'); }
}
function loop(){ update(); if (!video.paused && !video.ended) requestAnimationFrame(loop); }
video.addEventListener('timeupdate', update); video.addEventListener('seeked', update);
video.addEventListener('play', () => requestAnimationFrame(loop));
svg.addEventListener('click', ev => {
  const r = svg.getBoundingClientRect(), px = (ev.clientX - r.left) / r.width * W;
  video.currentTime = Math.max(t0, Math.min(t1, t0 + (px - L) / (W - L - R) * (t1 - t0)));
});
svg.setAttribute('data-ready', '1');
update();
})();
"""

if TYPE_CHECKING:
    import pandas as pd


def _clean(values: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else round(float(v), 5) for v in np.asarray(values, dtype=np.float64)]


def _cell(key: str, value) -> str:
    if key == "face_fraction" and isinstance(value, (int, float)):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("–" if value is None else str(value))


#: a colour per person of a several-people page (valence solid, arousal dashed)
PERSON_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def page_html(frame: pd.DataFrame, summary: dict, video_src: str, title: str, note: str = "",
              people: list[pd.DataFrame] | None = None) -> str:
    """The page as a string. ``frame``: ``time``, ``valence`` / ``arousal`` (either may be absent) and
    ``face_detected``; ``video_src``: a ``data:`` URI or a relative file name. ``people``: one such table per
    person (``predict --faces all``): one valence (solid) and one arousal (dashed) trace per person, in the
    person's colour; ``frame``'s ``face_detected`` then marks the frames with anybody."""
    data = {"time": _clean(frame["time"].to_numpy()),
            "face": [bool(v) for v in frame["face_detected"].to_numpy()]}
    for t in ("valence", "arousal"):
        if t in frame:
            data[t] = _clean(frame[t].to_numpy())
    colors = {"valence": "#e08000", "arousal": "#0070d0"}
    targets = [t for t in ("valence", "arousal") if t in frame]
    explained = [t for t in targets if all(contribution_column(t, m) in frame for m in MODALITIES)]
    if explained and people is None:  # predict --explain: the contributions as thin dashed / dotted traces
        data["series"] = [[t, colors[t], data[t], ""] for t in targets] + [
            [f"{t}: {m}", colors[t], _clean(frame[contribution_column(t, m)].to_numpy()),
             "2,3" if m == "voice" else "8,3"]
            for t in explained for m in MODALITIES]
    last_gate = last_gate_columns(frame.columns)  # a gated model's --explain: each gate's last candidate
    if last_gate and people is None:
        gate_colors = ("#555555", "#8c564b", "#9467bd", "#17becf", "#bcbd22", "#7f7f7f", "#e377c2", "#2ca02c")
        data.setdefault("series", [[t, colors[t], data[t], ""] for t in targets])
        data["series"] += [[f"gate: {g}", gate_colors[i % len(gate_colors)], _clean(frame[c].to_numpy()), "1,3"]
                           for i, (g, c) in enumerate(last_gate.items())]
    spread = [t for t in targets if f"{t}_spread" in frame]
    if spread and people is None:  # an ensemble: its spread as a band around the mean
        data["bands"] = [[colors[t], _clean(frame[t].to_numpy() - frame[f"{t}_spread"].to_numpy()),
                          _clean(frame[t].to_numpy() + frame[f"{t}_spread"].to_numpy())] for t in spread]
    if people is not None:
        data["series"] = [[f"p{k + 1} {t}", PERSON_COLORS[k % len(PERSON_COLORS)],
                           _clean(np.where(p["face_detected"], p[t], np.nan)), "" if t == "valence" else "5,3"]
                          for k, p in enumerate(people) for t in ("valence", "arousal") if t in p]
    # JSON in a script element: "</" cannot end it early once escaped
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    meaning = summary.get("meaning", "")
    synthetic = summary.get("trained_on") == "synthetic"
    rows = "".join(f"<tr><td>{label}</td><td>{_cell(key, summary[key])}</td></tr>"
                   for key, label in _SUMMARY_ROWS if key in summary)
    warnings = "".join(f"<p class='warn'>warning: {html.escape(w)}</p>" for w in summary.get("warnings", []))
    legend = "".join(f"<span class='{c}'>&#9644; {t}</span>" for t, c in (("valence", "v"), ("arousal", "a"))
                     if t in data and people is None)
    legend += "".join(f"<span style='color:{color}'>&#9644; {html.escape(name)}</span>"
                      for name, color, _, _ in data.get("series", []) if people is not None or ":" in name)
    if data.get("bands"):
        legend += "<span>band: ± the ensemble's spread (std across its models)</span>"
    if explained and people is None:
        note = (note + " " if note else "") + EXPLAIN_CHART
    if last_gate and people is None:
        note += (" Fine dotted (gate: ...): each gate's weight, 0 to 1, of its last candidate (the attended features, "
                 "the last iterate).")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} — avaffect</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meaning{' synthetic' if synthetic else ''}">{html.escape(meaning)}</p>
{warnings}
<video id="video" controls preload="auto" src="{html.escape(video_src, quote=True)}"></video>
{f'<p>{html.escape(note)}</p>' if note else ''}
<div class="legend">{legend}<span class="nf">&#9646; no face</span></div>
<svg id="chart" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="valence and arousal over time"></svg>
<p id="readout"></p>
<table>{rows}</table>
<script type="application/json" id="avaffect-data">{payload}</script>
<script>{_SCRIPT}</script>
</body></html>
"""


def write_page(path: str | Path, frame: pd.DataFrame, summary: dict, video: str | Path, title: str,
               people: list[pd.DataFrame] | None = None, embed_limit_mb: float = EMBED_LIMIT_MB) -> tuple[Path, bool]:
    """Write the page (atomically); ``video``: the H.264 mp4 to show (the overlay). Returns ``(path, embedded)``:
    ``embedded`` is ``False`` when the video was over ``embed_limit_mb`` and the page links to it instead (it
    must then stay beside the page)."""
    path, video = Path(path), Path(video)
    size_mb = video.stat().st_size / 1e6
    if size_mb <= embed_limit_mb:
        src = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode("ascii")
        note = ""
    else:
        src = video.name
        note = (f"The video ({size_mb:.0f} MB) is not embedded in this page: it plays {video.name} from the same "
                "folder, so keep the two files together.")
    atomic_write_text(path, page_html(frame, summary, src, title, note, people))
    return path, size_mb <= embed_limit_mb


def write_index(path: str | Path, pages: list[tuple[str, Path, dict]]) -> Path:
    """``index.html`` of a folder of pages: ``(name, page path, summary)`` per video, linked relative to it."""
    path = Path(path)
    rows = "".join(
        f"<tr><td><a href=\"{html.escape(p.name, quote=True)}\">{html.escape(name)}</a></td>"
        f"<td>{_cell('face_fraction', s.get('face_fraction'))}</td><td>{_cell('', s.get('valence_mean'))}</td>"
        f"<td>{_cell('', s.get('arousal_mean'))}</td><td>{html.escape(str(s.get('trained_on', '')))}</td></tr>"
        for name, p, s in pages)
    atomic_write_text(path, f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>avaffect predictions</title><style>{_STYLE}</style></head>
<body><h1>avaffect predictions</h1><table><tr><td>video</td><td>face found in</td><td>valence mean</td>
<td>arousal mean</td><td>trained on</td></tr>{rows}</table></body></html>
""")
    return path
