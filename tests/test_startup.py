"""What ``predict`` imports before its first frame, and the files it writes without pandas: the start-up of the
command (docs/benchmarks/predict_speed.md) rests on these."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from avaffect.workflows.predict.result import table_csv

HEAVY = ("torch", "pandas", "matplotlib", "scipy.optimize", "lightning")


def test_the_predict_path_imports_nothing_heavy():
    """torch (2 s), pandas, matplotlib and scipy.optimize stay out of the command line and the predict package:
    each is imported where it is used (the torch model, the page, the plot, the people tracker)."""
    code = ("import sys; import avaffect.cli.main, avaffect.workflows.predict; "
            "from avaffect.cli.main import build_parser; build_parser(); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_table_csv_is_what_pandas_writes():
    cols = {"frame": np.arange(6), "time": np.array([0, 1 / 30, 1e-7, 2.5, 1234.5678912, 7.0]),
            "valence": np.array([0.1, np.nan, -1 / 3, 1e-9, -4e-7, 1.0], np.float32),
            "arousal": np.array([np.nan] * 6),
            "face_detected": np.array([True, False, True, True, False, True]),
            "trained_on": np.array(["synthetic", "a,b", 'q"x', "x", "authors:rja", "line\nbreak"], dtype=object)}
    assert table_csv(cols) == pd.DataFrame(cols).to_csv(index=False, float_format="%.6f")
    empty = {k: v[:0] for k, v in cols.items()}
    assert table_csv(empty) == pd.DataFrame(empty).to_csv(index=False, float_format="%.6f")
