"""native_stderr_to_log: a native library's stderr lines become log records (chatter at DEBUG, the rest WARNING)."""

from __future__ import annotations

import logging
import os

from avaffect.logs import native_stderr_to_log


def test_native_stderr_lines_are_logged_not_printed(capfd, caplog):
    log = logging.getLogger("avaffect.test_native")
    with caplog.at_level(logging.DEBUG, logger="avaffect.test_native"):
        with native_stderr_to_log(log, r"^INFO: Created TensorFlow Lite XNNPACK delegate"):
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nERROR: something real\n")
        os.write(2, b"after\n")  # stderr is restored after the block
    out = capfd.readouterr()
    assert "XNNPACK" not in out.err and "something real" not in out.err and "after" in out.err
    levels = {r.getMessage(): r.levelno for r in caplog.records if r.name == "avaffect.test_native"}
    assert levels == {"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.": logging.DEBUG,
                      "ERROR: something real": logging.WARNING}


def test_an_error_inside_the_block_still_restores_stderr(capfd):
    log = logging.getLogger("avaffect.test_native")
    try:
        with native_stderr_to_log(log, "x"):
            raise KeyError("boom")
    except KeyError:
        pass
    os.write(2, b"visible\n")
    assert "visible" in capfd.readouterr().err
