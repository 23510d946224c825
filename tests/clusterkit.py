"""Helpers of the cluster tests (``tests/test_cluster.py``): a local Ray head, and extractors that kill the process
they run in. Ray workers import this module by name (``clusterkit``) to unpickle the extractors, so the head is
started with this folder on ``PYTHONPATH``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avaffect.features.extractors.base import Extractor, ExtractorParams

TESTS = Path(__file__).resolve().parent
# no token authentication on the test head (Ray turns it on by itself when ~/.ray/auth_token exists, and a driver
# then needs RAY_AUTH_MODE=token too): the tests' drivers set the same
RAY_AUTH_MODE = "disabled"


def expected_features(rec) -> np.ndarray:
    """What the extractors below give a recording when they do not kill: its step times and its name's length."""
    return np.stack([rec.times, np.full(rec.num_steps, len(rec.name))], 1).astype(np.float32)


class _Killer(Extractor):
    """Computes :func:`expected_features`, except that on recording ``victim`` it SIGKILLs its own process whenever
    :meth:`kills` says so (a decoder that segfaults on one file)."""

    modality = "audio"

    class Params(ExtractorParams):
        victim: str = ""
        marker: str = ""

    @property
    def dim(self) -> int:
        return 2

    def kills(self, marker: Path) -> bool:
        raise NotImplementedError

    def extract(self, rec) -> np.ndarray:
        if rec.name == self.params["victim"] and self.kills(Path(self.params["marker"])):
            os.kill(os.getpid(), signal.SIGKILL)
        return expected_features(rec)


class KillOnce(_Killer):
    """Kills on the first try of ``victim`` (``marker`` is created then, the pid in it), computes on every later
    try."""

    name = "test_kill_once"

    def kills(self, marker: Path) -> bool:
        if marker.exists():
            return False
        marker.write_text(str(os.getpid()))
        return True


class KillAlways(_Killer):
    """Kills on every try of ``victim``; each try appends the pid to ``marker``."""

    name = "test_kill_always"

    def kills(self, marker: Path) -> bool:
        with open(marker, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """The processes of session ``sid`` (Linux ``/proc``; empty elsewhere)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # after the name: state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


@dataclass
class RayHead:
    address: str  # RAY_ADDRESS of the head
    sid: int  # the session of every process of this cluster: `ray start` leads it (its daemons share its process
    # group; Ray puts each worker in a group of its own, in the same session)
    temp_dir: Path
    start_seconds: float

    def stop(self) -> None:
        """Kill this cluster's processes, and no other Ray on the machine (which `ray stop` would)."""
        try:
            os.killpg(self.sid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 1.5
        while session_pids(self.sid) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in session_pids(self.sid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start_ray_head(num_cpus: int = 2) -> RayHead:
    """``ray start --head`` on 127.0.0.1 with ``num_cpus`` CPUs, in its own process group; Ray's temp folder is a
    short one under /tmp (its socket paths must stay under 108 characters)."""
    temp_dir = Path(tempfile.mkdtemp(prefix="avr-", dir="/tmp"))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(":"),
               RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE=RAY_AUTH_MODE)
    env.pop("RAY_ADDRESS", None)
    ray_cli = Path(sys.executable).with_name("ray")
    cmd = [str(ray_cli), "start", "--head", f"--num-cpus={num_cpus}", f"--port={port}", "--node-ip-address=127.0.0.1",
           f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats",
           "--object-store-memory=100000000"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    head = RayHead(f"127.0.0.1:{port}", proc.pid, temp_dir, 0.0)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        head.stop()
        raise RuntimeError(f"`ray start --head` did not finish in 120 s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        head.stop()
        raise RuntimeError(f"`ray start --head` failed ({proc.returncode}):\n{out[-3000:]}")
    head.start_seconds = time.monotonic() - t0
    return head
