"""``avaffect live --serve PORT``: a page on 127.0.0.1 with the rolling valence/arousal chart and the current frame,
updated by Server-Sent Events.

Routes: ``/`` the page (self-contained: inline script and style, no library, no network), ``/events`` the event
stream (``step``: a JSON array of emitted steps, as the JSON Lines; ``summary``: the run's summary at the end; a
new client first gets the last :attr:`LiveServer.HISTORY` steps), ``/frame.jpg`` the newest frame the face pipeline
took (JPEG, at most 640 px wide). The server listens on the loopback interface only.
"""

from __future__ import annotations

import collections
import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from avaffect.errors import AvaffectError
from avaffect.workflows.live.engine import LiveStep, LiveSummary

__all__ = ["LiveServer", "PAGE"]

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>avaffect live</title><link rel="icon" href="data:,">
<style>
body{font-family:system-ui,sans-serif;margin:1em auto;max-width:1000px;color:#222}
#wrap{display:flex;gap:1em;align-items:flex-start} #frame{width:320px;background:#000;min-height:180px}
#chart{flex:1;width:100%;height:260px;border:1px solid #ddd} .k{display:inline-block;width:1.5em;height:3px;
vertical-align:middle} #status{color:#555;font-size:.9em} #summary{white-space:pre-wrap;font-size:.85em}
</style></head><body>
<h1>avaffect live: <span id="source"></span></h1>
<p id="status">connecting…</p>
<div id="wrap"><img id="frame" alt="the newest frame"><canvas id="chart" width="640" height="260"
data-points="0" data-ready="0"></canvas></div>
<p><span class="k" style="background:#1f77b4"></span> valence &nbsp; <span class="k" style="background:#ff7f0e">
</span> arousal &nbsp; lighter: provisional (its final value replaces it); grey band: no face. Last 30 s.</p>
<p id="now"></p><div id="summary"></div>
<script>
(function(){
const SPAN = 30, canvas = document.getElementById('chart'), ctx = canvas.getContext('2d');
const steps = new Map(); let latest = -1, dirty = false;
function draw(){
  dirty = false; const W = canvas.width, H = canvas.height; ctx.clearRect(0, 0, W, H);
  const rows = Array.from(steps.values()).sort((a, b) => a.frame - b.frame);
  if (!rows.length) return;
  const tEnd = rows[rows.length - 1].time, t0 = tEnd - SPAN;
  const x = t => 40 + (t - t0) / SPAN * (W - 50), y = v => H / 2 - v * (H / 2 - 10);
  ctx.strokeStyle = '#ccc'; ctx.beginPath(); ctx.moveTo(40, y(0)); ctx.lineTo(W - 10, y(0)); ctx.stroke();
  ctx.fillStyle = '#666'; ctx.fillText('+1', 10, y(1) + 4); ctx.fillText('0', 16, y(0) + 4);
  ctx.fillText('-1', 12, y(-1) + 4);
  ctx.fillStyle = 'rgba(0,0,0,0.07)';
  let drawn = 0;
  for (const r of rows) if (r.time >= t0 && !r.face_detected) ctx.fillRect(x(r.time), 0, 2, H);
  for (const [key, colour] of [['valence', '31,119,180'], ['arousal', '255,127,14']]) {
    let prev = null;
    for (const r of rows) {
      if (r.time < t0 || r[key] === null || r[key] === undefined) { prev = null; continue; }
      if (prev) {
        ctx.strokeStyle = 'rgba(' + colour + ',' + (r.provisional ? 0.35 : 1) + ')';
        ctx.beginPath(); ctx.moveTo(x(prev.time), y(prev[key])); ctx.lineTo(x(r.time), y(r[key])); ctx.stroke();
      }
      prev = r; drawn += 1;
    }
  }
  canvas.dataset.points = String(drawn); canvas.dataset.ready = '1';
  const last = rows[rows.length - 1];
  document.getElementById('now').textContent = 't = ' + last.time.toFixed(2) + ' s: valence ' +
    (last.valence === null ? '–' : last.valence.toFixed(2)) + ', arousal ' +
    (last.arousal === null ? '–' : last.arousal.toFixed(2)) + (last.provisional ? ' (provisional)' : '');
  while (steps.size > 4000) steps.delete(steps.keys().next().value);
}
function schedule(){ if (!dirty) { dirty = true; requestAnimationFrame(draw); } }
const es = new EventSource('/events');
es.addEventListener('hello', e => { const h = JSON.parse(e.data);
  document.getElementById('source').textContent = h.source + ' (' + h.model + ')'; });
es.addEventListener('step', e => {
  for (const s of JSON.parse(e.data)) { const old = steps.get(s.frame); if (!old || old.provisional || !s.provisional)
    steps.set(s.frame, s); latest = Math.max(latest, s.frame); }
  document.getElementById('status').textContent = 'live: ' + steps.size + ' steps'; schedule(); });
es.addEventListener('summary', e => { document.getElementById('status').textContent = 'the stream ended';
  document.getElementById('summary').textContent = JSON.stringify(JSON.parse(e.data), null, 1); es.close(); });
es.onerror = () => { document.getElementById('status').textContent = 'disconnected'; };
const img = document.getElementById('frame');
setInterval(() => { if (latest >= 0) img.src = '/frame.jpg?n=' + latest; }, 250);
})();
</script></body></html>
"""


class LiveServer:
    """The page and its event stream (module docstring), as a live sink. ``port`` 0 picks a free port
    (:attr:`port` says which)."""

    HISTORY = 2000  # steps a new client gets first

    def __init__(self, port: int, source: str, model: str, targets: list[str]) -> None:
        self.targets = targets
        self.hello = json.dumps({"source": source, "model": model, "targets": targets})
        self.history: collections.deque[str] = collections.deque(maxlen=self.HISTORY)
        self.clients: list[queue.Queue] = []
        self.lock = threading.Lock()
        self.latest: np.ndarray | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - quiet: stdout carries the JSON Lines
                pass

            def do_GET(self):  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/":
                    body = PAGE.encode()
                    self._send(200, "text/html; charset=utf-8", body)
                elif path == "/frame.jpg":
                    body = server.jpeg()
                    if body is None:
                        self._send(404, "text/plain", b"no frame yet")
                    else:
                        self._send(200, "image/jpeg", body)
                elif path == "/events":
                    server.stream(self)
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, code: int, kind: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        try:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
        except OSError as e:
            raise AvaffectError(f"--serve {port}: cannot listen on 127.0.0.1:{port} ({e.strerror}); pick another "
                                "port, or 0 for a free one") from None
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="avaffect-live-server", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # ----------------------------------------------------------------------------------------------- events

    def _publish(self, event: str, data: str, keep: bool = True) -> None:
        message = f"event: {event}\ndata: {data}\n\n"
        with self.lock:
            if keep:
                self.history.append(message)
            for q in self.clients:
                q.put(message)

    def stream(self, handler: BaseHTTPRequestHandler) -> None:
        q: queue.Queue = queue.Queue()
        with self.lock:
            backlog = list(self.history)
            self.clients.append(q)
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Cache-Control", "no-store")
            handler.end_headers()
            handler.wfile.write(f"event: hello\ndata: {self.hello}\n\n".encode())
            for m in backlog:
                handler.wfile.write(m.encode())
            handler.wfile.flush()
            while True:
                try:
                    m = q.get(timeout=5.0)
                except queue.Empty:
                    m = ": keep-alive\n\n"
                handler.wfile.write(m.encode())
                handler.wfile.flush()
                if m.startswith("event: summary"):
                    return
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            with self.lock:
                self.clients.remove(q)

    def jpeg(self) -> bytes | None:
        import cv2  # lazy: OpenCV loads at the first frame, as in the face pipeline

        rgb = self.latest
        if rgb is None:
            return None
        h, w = rgb.shape[:2]
        if w > 640:
            rgb = cv2.resize(rgb, (640, max(1, int(round(h * 640 / w)))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 80])
        return buf.tobytes() if ok else None

    # ------------------------------------------------------------------------------------------ as a live sink

    def write(self, steps: list[LiveStep]) -> None:
        if steps:
            self._publish("step", json.dumps([s.as_json(self.targets) for s in steps]))

    def frame(self, rgb: np.ndarray) -> None:
        self.latest = rgb

    def close(self, summary: LiveSummary) -> None:
        self._publish("summary", json.dumps(summary.as_json()))

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
