"""Run feature extractors over recordings into a :class:`FeatureStore`: resumable, parallel, fault-tolerant.

* Resumable / idempotent: a (extractor, recording) pair already ``done`` in the store is skipped.
* Parallel: ``workers > 1`` runs tasks in a ``ProcessPoolExecutor`` with the ``spawn`` start method
  (safe with threads, CUDA and macOS). Extractors and recordings are pickled to the workers, so an
  extractor must be picklable (see :class:`~avaffect.features.extractors.Extractor`); workers write
  the ``.npy`` and the per-recording status sidecar themselves, the parent rewrites
  ``manifest.json`` (every ~30 s and at the end).
* Fault-tolerant: an exception in one recording is recorded with ``mark_failed`` and the run goes
  on. If a worker process dies (segfault in a decoder, out of memory), the tasks that were running
  are retried one at a time in a fresh process; the one that kills its process again is recorded
  as failed.
* Sharding: ``shard=(i, n)`` processes the i-th of n disjoint slices of the recordings (sorted by
  name), for splitting a dataset over machines.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from avaffect.data.recording import Recording
from avaffect.errors import ConfigError, DataError
from avaffect.features.extractors.base import Extractor
from avaffect.features.store import FeatureStore
from avaffect.pools import one_thread, spawn_pool
from avaffect.progress import progress_bar

__all__ = ["ExtractionSummary", "extract_features", "select_shard"]

log = logging.getLogger(__name__)

MANIFEST_EVERY_S = 30.0
NO_MEDIA_REASON = ("its media are not here (its timeline comes from the feature store) and its features under this "
                   "extractor are missing, or were computed from other media than that timeline: run `avaffect "
                   "extract` with this configuration where the media are, and copy the store here")


@dataclass
class ExtractionSummary:
    """What a run did. Pairs are ``(extractor_id, recording)``; failures carry a reason."""

    done: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (extractor_id, recording, reason)
    frames: int = 0  # timeline steps extracted (over all done pairs)
    seconds: float = 0.0  # wall time of the run

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failures(self) -> dict[str, str]:
        """``{"<extractor_id>/<recording>": reason}``."""
        return {f"{e}/{r}": reason for e, r, reason in self.failed}

    def format(self, max_failures: int = 10) -> str:
        """One summary line, then one line per failure (at most ``max_failures``)."""
        rate = f", {self.frames / self.seconds:.0f} frames/s" if self.seconds > 0 and self.frames else ""
        line = (
            f"extract: {len(self.done)} done, {len(self.skipped)} skipped (already done), "
            f"{len(self.failed)} failed in {self.seconds:.1f} s{rate}"
        )
        lines = [line]
        for e, r, reason in self.failed[:max_failures]:
            lines.append(f"  FAILED {e}/{r}: {reason}")
        if len(self.failed) > max_failures:
            lines.append(f"  ... and {len(self.failed) - max_failures} more (see the store's manifest.json)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def select_shard(recordings: list[Recording], shard: tuple[int, int] | None) -> list[Recording]:
    """The ``i``-th of ``n`` disjoint slices (round-robin over recordings sorted by name)."""
    if shard is None:
        return list(recordings)
    i, n = shard
    if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
        raise ConfigError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
    ordered = sorted(recordings, key=lambda r: r.name)
    return ordered[i::n]


def _reason(exc: BaseException) -> str:
    msg = str(exc).strip()
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _run_one(extractor: Extractor, rec: Recording, root: str) -> tuple[str, str | None, float, int]:
    """Extract and save one pair; never raises. Returns (status, reason, seconds, frames)."""
    store = FeatureStore(root)
    t0 = time.perf_counter()
    try:
        arr = extractor.extract(rec)
        secs = time.perf_counter() - t0
        store.save(extractor, rec, arr, seconds=secs, update_manifest=False)
        return "done", None, secs, rec.num_steps
    except Exception as exc:  # one bad recording must not stop the run
        reason = _reason(exc)
        try:
            store.mark_failed(extractor, rec.name, reason, update_manifest=False)
        except Exception as exc2:  # the parent records it again
            log.debug("could not mark %s failed from the worker: %s", rec.name, exc2)
        return "failed", reason, time.perf_counter() - t0, 0


def extract_features(
    recordings: list[Recording],
    extractors: list[Extractor],
    store: FeatureStore,
    workers: int = 1,
    progress: bool = True,
    force: bool = False,
    shard: tuple[int, int] | None = None,
    backend: str = "process",
    verify: bool = False,
) -> ExtractionSummary:
    """Extract every (extractor, recording) pair not yet done into ``store``.

    ``workers``: processes (1 = in this process; 0 or less = one per CPU core). ``force``:
    recompute pairs that are already done. ``verify``: also re-read every done file and compare its sha256 with
    the one recorded when it was written (a replaced or damaged file is extracted again; ``avaffect extract``
    does this, training only checks sizes and refuses non-finite values on load). ``shard``: ``(i, n)``, see
    :func:`select_shard`.
    ``backend``: ``"process"`` (this machine) or ``"ray"`` (a Ray cluster — the optional extra
    ``avaffect[ray]``; ``RAY_ADDRESS`` selects the cluster; the store must be on a shared filesystem).
    Returns the summary; ``summary.ok`` is False when any pair failed (the CLI exits non-zero).
    """
    t_start = time.perf_counter()
    recs = select_shard(recordings, shard)
    dup = sorted(n for n, c in Counter(r.name for r in recs).items() if c > 1)
    if dup:
        raise DataError(
            None, f"duplicate recording names: {', '.join(dup[:5])}", "recording names must be unique"
        )
    if workers <= 0:
        workers = os.cpu_count() or 1

    summary = ExtractionSummary()
    tasks: list[tuple[Extractor, Recording]] = []
    for ex in extractors:
        store.register(ex)
        for rec in recs:
            if not force and store.is_done(ex.id, rec.name, rec) and (not verify or store.verify(ex.id, rec.name)):
                summary.skipped.append((ex.id, rec.name))
                store.record_timeline(ex.id, rec)  # features from before the timeline index: index them now
            elif rec.stored is not None:  # timeline from the store, media elsewhere: nothing to extract from
                summary.failed.append((ex.id, rec.name, NO_MEDIA_REASON))
            else:
                tasks.append((ex, rec))

    root = str(Path(store.root).resolve())
    touched: set[str] = set()
    last_manifest = time.monotonic()
    bar = progress_bar(total=len(tasks), desc="extract features", unit="rec", disable=not progress)

    def record(ex: Extractor, rec: Recording, status: str, reason: str | None, frames: int) -> None:
        nonlocal last_manifest
        touched.add(ex.id)
        if status == "done":
            summary.done.append((ex.id, rec.name))
            summary.frames += frames
        else:
            reason = reason or "unknown error"
            summary.failed.append((ex.id, rec.name, reason))
            log.warning("feature extraction failed: %s/%s: %s", ex.id, rec.name, reason)
            if not (store.entry(ex.id, rec.name) or {}).get("status") == "failed":
                store.mark_failed(ex, rec.name, reason, update_manifest=False)
            bar.set_postfix(failed=len(summary.failed))
        bar.update(1)
        if time.monotonic() - last_manifest > MANIFEST_EVERY_S:
            for eid in touched:
                store.write_manifest(eid)
            last_manifest = time.monotonic()

    if backend not in ("process", "ray"):
        raise ConfigError(f"unknown extraction backend {backend!r}; use 'process' or 'ray'")
    try:
        if backend == "ray":
            _run_ray(tasks, root, record)
        elif workers == 1 or len(tasks) <= 1:
            for ex, rec in tasks:
                status, reason, _, frames = _run_one(ex, rec, root)
                record(ex, rec, status, reason, frames)
        else:
            _run_pool(tasks, root, min(workers, len(tasks)), record)
    finally:
        bar.close()
        for eid in touched:
            store.write_manifest(eid)
        for ex in extractors:  # what workers killed mid-write (here or in an earlier run) left behind
            for p in store.sweep_orphans(ex):
                log.info("removed %s, left by a writer that was killed", p)
    summary.seconds = time.perf_counter() - t_start
    return summary


POOL_START_FIX = (
    "worker processes could not start. When calling extract_features(workers > 1) from a script, "
    "put the call under `if __name__ == '__main__':` (processes are spawned and re-import the "
    "script), or use workers=1"
)


def _ping() -> bool:
    return True


class _Pool:
    """A process pool that can be replaced when a worker dies, and that fails loudly if none can start."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.healthy = False  # some task already came back from a worker
        self.pool = spawn_pool(workers)

    def restart(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = spawn_pool(self.workers)
        if not self.healthy:  # nothing ever worked: check that a worker can start at all
            try:
                self.pool.submit(_ping).result()
                self.healthy = True
            except BrokenProcessPool as exc:
                self.pool.shutdown(wait=False, cancel_futures=True)
                raise RuntimeError(POOL_START_FIX) from exc

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _run_pool(tasks, root: str, workers: int, record) -> None:
    """Run tasks with at most ``workers`` in flight; isolate the ones in flight when a worker dies."""
    pending = list(reversed(tasks))  # pop() from the end keeps the original order
    suspects: list[tuple[Extractor, Recording]] = []
    pool = _Pool(workers)
    running: dict[Future, tuple[Extractor, Recording]] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                task = pending.pop()
                try:
                    running[pool.pool.submit(_run_one, task[0], task[1], root)] = task
                except BrokenProcessPool:
                    pending.append(task)
                    break
            if not running:  # the pool broke before anything could be submitted
                pool.restart()
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for fut in finished:
                ex, rec = running.pop(fut)
                try:
                    status, reason, _, frames = fut.result()
                    pool.healthy = True
                except BrokenProcessPool:
                    suspects.append((ex, rec))
                    broken = True
                    continue
                except Exception as exc:  # e.g. the task could not be pickled
                    status, reason, frames = "failed", _reason(exc), 0
                record(ex, rec, status, reason, frames)
            if broken:
                suspects.extend(running.values())  # everything in flight is a suspect
                running.clear()
                pool.restart()
    finally:
        pool.shutdown()

    for ex, rec in suspects:  # retry each alone: the one that crashes again is the culprit
        solo = spawn_pool(1)
        try:
            status, reason, _, frames = solo.submit(_run_one, ex, rec, root).result()
        except BrokenProcessPool:
            status, reason, frames = "failed", "the worker process died (crash or out of memory) twice", 0
        except Exception as exc:
            status, reason, frames = "failed", _reason(exc), 0
        finally:
            solo.shutdown(wait=True)
        record(ex, rec, status, reason, frames)


RAY_RETRIES = 1  # a Ray task whose worker process dies is run once more, then its pair is reported failed
RAY_CONNECT_TIMEOUT_S = 10.0
RAY_FIX = ("start the cluster first (`ray start --head` on one node, `ray start --address HEAD:PORT` on the others) "
           "and set RAY_ADDRESS to the head's HOST:PORT (6379 unless `ray start --port` said otherwise); or unset "
           "RAY_ADDRESS to run Ray on this machine alone")


def _ray_host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``RAY_ADDRESS`` (``HOST:PORT``, ``ray://HOST:PORT``, ``[v6]:PORT``), or None for Ray's
    own keywords (``auto``, ``local``) and anything without a port (left to Ray)."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _check_ray_address(address: str) -> None:
    """Refuse an address nothing listens on: ``ray.init`` would otherwise wait for it for minutes."""
    import socket

    target = _ray_host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at RAY_ADDRESS={address} "
                          f"({exc.strerror or exc}) — {RAY_FIX}") from None


def _run_one_ray(extractor: Extractor, rec: Recording, root: str) -> tuple[str, str | None, float, int]:
    """:func:`_run_one` in a Ray worker, on one thread as a pool worker (one task per CPU Ray gives out). Ray has
    already set ``OMP_NUM_THREADS`` to the task's CPUs, which BLAS and a torch imported later follow; OpenCV's own
    pool is set here, torch's only if it is loaded (importing it costs every fresh worker seconds)."""
    one_thread(import_torch=False)
    return _run_one(extractor, rec, root)


def _ray_failure(ray, exc: BaseException) -> str:
    """The reason a Ray task gave no result: its worker died on every try, or Ray could not run it at all."""
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError)):
        tries = RAY_RETRIES + 1
        return (f"the Ray worker process running it died on all {tries} tries (crash, kill or out of memory; "
                f"see the workers' logs on the node): {_reason(exc)}")
    while isinstance(getattr(exc, "cause", None), BaseException):  # RayTaskError(RaySystemError(...)) ...
        exc = exc.cause
    reason = f"Ray could not run it: {_reason(exc).splitlines()[0]}"  # the rest is Ray's traceback
    if "No module named" in reason:
        reason += (" — the Ray workers must import every module the extractor's class comes from: install it (or "
                   "put it on PYTHONPATH before `ray start`) on every node")
    return reason


def _run_ray(tasks, root: str, record) -> None:
    """Run the tasks as Ray tasks (one per pair, one CPU each); Ray workers write to the shared store themselves.

    The cluster: the one Ray is already connected to in this process (left connected), else ``RAY_ADDRESS``
    (``HOST:PORT`` of a head started with ``ray start --head``; checked to answer within
    :data:`RAY_CONNECT_TIMEOUT_S`), else Ray's default (a Ray running on this machine, or one started for this call);
    a connection made here is closed at the end. Retry policy: an extractor's exception is recorded at once (no
    retry: it would fail again); a task whose worker process dies (a segfault, a kill, Ray's or the kernel's
    out-of-memory killer) is run again :data:`RAY_RETRIES` time(s), then its pair is reported failed. A worker killed
    mid-task leaves no file under the final name (writes are atomic) and no entry marked done.
    """
    try:
        import ray  # lazy: the optional Ray extra, only for this backend
    except ImportError:
        raise ConfigError("the Ray backend needs the optional extra: pip install 'avaffect[ray]'") from None
    connect = not ray.is_initialized()
    if connect:
        address = os.environ.get("RAY_ADDRESS") or None
        if address:
            _check_ray_address(address)
        refused = (ConnectionError, RuntimeError, getattr(ray.exceptions, "AuthenticationError", ConnectionError))
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except refused as exc:  # it answers, but no Ray session came of it
            raise ConfigError(
                f"cannot connect to the Ray cluster at RAY_ADDRESS={address}: {_reason(exc)} — if the cluster uses "
                f"Ray's token authentication, set RAY_AUTH_MODE=token and its token (~/.ray/auth_token or "
                f"RAY_AUTH_TOKEN) here too; this Ray ({ray.__version__}) and Python must be the cluster's") from None
    pending: dict = {}
    try:
        remote = ray.remote(num_cpus=1, max_retries=RAY_RETRIES, retry_exceptions=False)(_run_one_ray)
        pending = {remote.remote(ex, rec, root): (ex, rec) for ex, rec in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ex, rec = pending.pop(ready[0])
            try:
                status, reason, _, frames = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                status, reason, frames = "failed", _ray_failure(ray, exc), 0
            record(ex, rec, status, reason, frames)
    finally:
        for ref in pending:  # interrupted: nothing of this run keeps running on the cluster
            try:
                ray.cancel(ref, force=True)
            except Exception as exc:  # pragma: no cover - already finished or gone
                log.debug("could not cancel a Ray task: %s", exc)
        if connect:
            ray.shutdown()
