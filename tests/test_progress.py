"""Progress output: plain occasional lines off a terminal, a header and one line per epoch for training."""

from __future__ import annotations

import io

from avaffect.progress import LineProgress, format_seconds, progress_bar


def test_line_progress_prints_a_few_plain_lines_with_an_eta():
    out = io.StringIO()
    bar = LineProgress(total=1000, desc="extract features", unit="rec", stream=out, every_s=1e9)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and 9 <= len(lines) <= 11
    assert lines[0].startswith("extract features: 100/1000 rec (10%)") and "ETA" in lines[0]
    assert lines[-1].startswith("extract features: 1000/1000 rec (100%)") and "ETA" not in lines[-1]
    quiet = io.StringIO()
    off = LineProgress(range(5), desc="x", stream=quiet, disable=True)
    assert list(off) == list(range(5)) and quiet.getvalue() == ""


def test_progress_bar_is_line_based_off_a_terminal():
    assert isinstance(progress_bar(total=3, desc="x"), LineProgress)  # pytest's stderr is not a terminal
    assert format_seconds(42) == "42 s" and format_seconds(185) == "3 min 05 s" and format_seconds(3720) == "1 h 02 min"
