"""``avaffect live``: valence/arousal from a camera, a microphone, a network stream or a pipe, as it happens.

:mod:`.engine` is the loop and its latency contract (final values, provisional ones, the frame-dropping rule),
:mod:`.sinks` the JSON Lines / CSV / summary writers, :mod:`.server` the page served on 127.0.0.1. The source is
:class:`avaffect.livemedia.LiveSource`."""

from avaffect.workflows.live.engine import LiveRun, LiveStep, LiveSummary, install_stop
from avaffect.workflows.live.server import LiveServer
from avaffect.workflows.live.sinks import CsvSink, JsonLinesSink, SummarySink

__all__ = ["CsvSink", "JsonLinesSink", "LiveRun", "LiveServer", "LiveStep", "LiveSummary", "SummarySink",
           "install_stop"]
