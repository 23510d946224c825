"""Atomic writes and the one output-path rule: nothing named after a recording or an input leaves its folder."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from avaffect.files import atomic_path, atomic_write_text, output_path, safe_name, write_json

HOSTILE = ["../../../../x", "/etc/passwd", "..", ".", ".hidden", "a/b", "C:\\x", "sub/../../y", "~/z", "ok-name_1"]


@pytest.mark.parametrize("name", HOSTILE)
def test_output_paths_stay_inside_their_folder(tmp_path, name):
    path = output_path(tmp_path / "out", name, ".csv")
    assert path.parent == tmp_path / "out" and path.resolve().parent == (tmp_path / "out").resolve()
    assert not path.name.startswith(".") and unquote(path.name[:-4]) == name
    atomic_write_text(path, "x\n")
    assert [p.name for p in (tmp_path / "out").iterdir()] == [path.name]


def test_distinct_names_give_distinct_files():
    assert len({safe_name(n) for n in HOSTILE + ["a%2Fb", "a_b"]}) == len(HOSTILE) + 2
    assert safe_name("synth000-30-256x192") == "synth000-30-256x192"  # ordinary names are unchanged
    with pytest.raises(ValueError):
        safe_name("")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == '{\n  "v": 1\n}\n' and list(tmp_path.iterdir()) == [target]


def test_written_files_follow_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_the_temporary_file_of_a_killed_writer_is_swept_and_no_other(tmp_path):
    """A process SIGKILLed inside atomic_path leaves its temporary file; sweep_orphans removes it (its writer is
    gone), never the final file, a live writer's temporary file, another machine's or a file of another name."""
    import os
    import signal
    import subprocess
    import sys

    from avaffect.files import sweep_orphans

    target = tmp_path / "rec.npy"
    target.write_bytes(b"finished")
    code = ("import os, signal, sys\nfrom avaffect.files import atomic_path\n"
            f"with atomic_path({str(target)!r}) as tmp:\n"
            "    tmp.write_bytes(b'half')\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert done.returncode == -signal.SIGKILL
    (orphan,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert orphan.name.startswith(".rec.npy.")
    with atomic_path(tmp_path / "other.json") as live:  # this (live) process's own temporary file
        live.write_text("{}")
        alive_other = tmp_path / f".x.json.{os.uname().nodename}~1~abc.tmp"  # pid 1 lives
        alive_other.write_text("")
        elsewhere = tmp_path / ".x.json.another-host.example~99999999~abc.tmp"
        elsewhere.write_text("")
        unrelated = tmp_path / ".notes.tmp"
        unrelated.write_text("")
        assert sweep_orphans(tmp_path) == [orphan]
        assert live.exists() and alive_other.exists() and elsewhere.exists() and unrelated.exists()
    assert target.read_bytes() == b"finished"
