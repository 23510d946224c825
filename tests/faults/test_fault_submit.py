"""Broken ABAW submissions: ``submit --check`` names the row and location; the writer never hands in NaN."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from faultchecks import only_if_ok, read_csv_rows
from faultkit import OK, Cases, Found, Step

CASES = Cases("submit")
HEADER = "image_location,valence,arousal"


def submit_inputs(d: Path, s) -> tuple[list[str], list[tuple[float, float]]]:
    """``d/preds`` (the shared run's validation CSVs), ``d/sample.txt`` listing their frames, and a valid
    ``d/sub.txt``; returns the locations and values in sample order."""
    preds = Path(shutil.copytree(s.run / "predictions" / "validation", d / "preds"))
    locs, values = [], []
    for f in sorted(preds.glob("*.csv")):
        header, rows = read_csv_rows(f)
        iv, ia = header.index("valence"), header.index("arousal")
        locs += [f"{f.stem}/{i + 1:05d}.jpg" for i in range(len(rows))]
        values += [(float(r[iv]), float(r[ia])) for r in rows]
    (d / "sample.txt").write_text(HEADER + "\n" + "".join(f"{x},,\n" for x in locs))
    write_submission(d / "sub.txt", locs, values)
    return locs, values


def write_submission(path: Path, locs, values, header: str = HEADER) -> None:
    path.write_text(header + "\n" + "".join(f"{loc},{v:.6f},{a:.6f}\n" for loc, (v, a) in zip(locs, values)))


def write_step(d: Path, out: str = "out/sub.txt", expect: str = "error", names=(), verify=None) -> Step:
    """``submit abaw`` from ``d/preds`` along ``d/sample.txt`` into ``out``."""
    return Step(["submit", "abaw", "--predictions", "preds", "--sample-file", "sample.txt", "--out", out], expect,
                names, (d / "out",), verify=verify)


@CASES("U01-valid", "write a submission from a run's predictions (valid)")
def u01(d, s):
    locs, values = submit_inputs(d, s)

    def verify(ran):
        out = d / "out" / "submission.txt"
        if not out.is_file():
            return Found(wrong=["no submission written"])
        header, rows = read_csv_rows(out)
        found = Found(note=f"{len(rows)} rows in sample order, values = predictions")
        if header != HEADER.split(","):
            found.wrong.append(f"header {header}")
        if [r[0] for r in rows] != locs:
            found.wrong.append("rows are not in the sample file's order")
        got = np.array([[float(r[1]), float(r[2])] for r in rows])
        if got.shape != (len(values), 2) or not np.allclose(got, np.clip(np.array(values), -1, 1), atol=1e-5):
            found.wrong.append("values differ from the run's predictions")
        return found
    return write_step(d, "out/submission.txt", OK, verify=only_if_ok(verify))


def check_case(cid: str, what: str, damage, names, extended: bool = False) -> None:
    """A case: ``submit --check`` of the valid submission changed by ``damage(locations, values)`` ->
    (locations, values, header); ``names``: texts, or functions of the locations, the message must hold."""
    def build(d, s):
        locs, values = submit_inputs(d, s)
        write_submission(d / "sub.txt", *damage(list(locs), list(values)))
        return Step(["submit", "abaw", "--check", "sub.txt", "--sample-file", "sample.txt"],
                    names=tuple(n(locs) if callable(n) else n for n in names))
    CASES.add(cid, what, build, extended)


check_case("U02-missing-row", "submit --check: a missing row", lambda l, v: (l[:7] + l[8:], v[:7] + v[8:], HEADER),
           (lambda locs: locs[7],))
check_case("U03-extra-row", "submit --check: an extra row", lambda l, v: (l + [l[-1]], v + [v[-1]], HEADER),
           ("extra row",))
check_case("U04-swapped-rows", "submit --check: two rows swapped",
           lambda l, v: (l[:3] + [l[4], l[3]] + l[5:], v[:3] + [v[4], v[3]] + v[5:], HEADER), (lambda locs: locs[3],))
check_case("U05-nan", "submit --check: a NaN value", lambda l, v: (l, v[:9] + [(math.nan, 0.1)] + v[10:], HEADER),
           ("nan",))
check_case("U06-wrong-header", "submit --check: a wrong header", lambda l, v: (l, v, "frame,val,aro"), ("header",))
check_case("U07-out-of-range", "submit --check: a value outside [-1, 1]",
           lambda l, v: (l, v[:2] + [(1.7, 0.0)] + v[3:], HEADER), ("1.7", "outside"), extended=True)


@CASES("U08-nan-prediction", "write a submission from a predictions CSV holding NaN")
def u08(d, s):
    submit_inputs(d, s)
    f = sorted((d / "preds").glob("*.csv"))[0]
    lines = f.read_text().splitlines()
    cells = lines[6].split(",")
    cells[2] = "nan"
    lines[6] = ",".join(cells)
    f.write_text("\n".join(lines) + "\n")
    return write_step(d, names=(f.name,), verify=lambda ran: Found(
        wrong=["a submission was written"] if (d / "out" / "sub.txt").exists() else [], note="nothing written"))


@CASES("U09-video-without-predictions", "write a submission whose sample file lists a video without predictions",
       extended=True)
def u09(d, s):
    submit_inputs(d, s)
    with open(d / "sample.txt", "a") as fh:
        fh.write("unseen_video/00001.jpg,,\nunseen_video/00002.jpg,,\n")
    return write_step(d, names=("unseen_video",))


@CASES("U10-sample-wrong-header", "a sample file with a wrong header", extended=True)
def u10(d, s):
    submit_inputs(d, s)
    sample = d / "sample.txt"
    sample.write_text(sample.read_text().replace("image_location", "frame", 1))
    return write_step(d, names=("sample.txt",))


@pytest.mark.parametrize("case", CASES.params())
def test_submit_case(case, fault_case):
    """Each submit case, declared above."""
    fault_case(case)
