"""Many videos: one after another with one predictor, or over worker processes that each load the model once."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cv2

from avaffect.errors import AvaffectError
from avaffect.workflows.predict.outputs import OutputRequest, write_outputs
from avaffect.workflows.predict.people import predict_people, write_people_outputs
from avaffect.workflows.predict.result import VideoPredictor

_WORKER: VideoPredictor | None = None  # the model loaded once per worker process


def _init_worker(factory: type, args: tuple) -> None:
    global _WORKER
    cv2.setNumThreads(1)  # the pool is the parallelism: one thread per worker, no oversubscription
    _WORKER = factory(*args)
    torch = sys.modules.get("torch")  # imported only where the torch model runs (an ONNX export needs none)
    if torch is not None:
        torch.set_num_threads(1)


def predict_one(predictor: VideoPredictor, video: str, name: str, crops_dir: str | None,
                request: OutputRequest) -> dict:
    """Predict one video and write its files: ``{"video", "summary", "paths"}``, or ``{"video", "error"}`` when
    the video cannot be predicted (the error says why and what to do)."""
    try:
        if request.faces == "all":
            people = predict_people(predictor, video)
            paths = write_people_outputs(people, request.out_dir, name, request.overlay, request.html)
            return {"video": video, "summary": people.summary.video.as_json(), "people": len(people.runs),
                    "paths": {k: str(v) for k, v in paths.items()}}
        run = predictor(video, crops_dir, request.overlay_to(name))
        paths = write_outputs(run, request.out_dir, name, overlay=request.overlay, html=request.html,
                              segments=request.segments)
    except AvaffectError as e:
        return {"video": video, "error": str(e)}
    return {"video": video, "summary": run.summary.as_json(), "paths": {k: str(v) for k, v in paths.items()}}


def _predict_in_worker(video: str, name: str, request: OutputRequest) -> dict:
    return predict_one(_WORKER, video, name, None, request)


def predict_many(predictor: VideoPredictor, inputs: list[tuple[Path, str]], request: OutputRequest, *,
                 workers: int = 1, crops_dir: str | Path | None = None) -> Iterator[dict]:
    """Predict ``(video, output name)`` pairs into ``request.out_dir`` with ``predictor``, or in ``workers``
    processes that each rebuild it (:meth:`VideoPredictor.spawn_args`) and run one torch thread; yields, as videos
    finish, the items of :func:`predict_one` (one bad video does not stop the others). ``crops_dir``: one video's
    own crops."""
    if workers <= 1 or len(inputs) <= 1:
        for video, name in inputs:
            yield predict_one(predictor, str(video), name, None if crops_dir is None else str(crops_dir), request)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(inputs)), mp_context=ctx, initializer=_init_worker,
                             initargs=predictor.spawn_args()) as pool:
        futures = {pool.submit(_predict_in_worker, str(v), n, request): v for v, n in inputs}
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except BrokenProcessPool:
                yield {"video": str(futures[fut]), "error": "its worker process died (out of memory?); run it "
                       "again alone with --workers 1"}
