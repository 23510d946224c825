"""The timeline is what a player shows: frames an mp4's edit list cuts (encoder priming) are not frames."""

from __future__ import annotations

import av
import numpy as np
import pytest
from mediafiles import write_primed_mp4

from avaffect.data.affwild2 import load_affwild2
from avaffect.data.folder import recording_from_video
from avaffect.data.layout import AFFWILD2_ANNOTATION_DIR, AFFWILD2_SPLIT_DIRS
from avaffect.media import iter_video_frames, read_audio, video_frame_times

N_SHOWN, PRIMED, FPS = 21, 3, 24

pytestmark = pytest.mark.skipif("libx264" not in av.codecs_available, reason="this FFmpeg build has no libx264")


@pytest.fixture(scope="module")
def primed(tmp_path_factory):
    return write_primed_mp4(tmp_path_factory.mktemp("edit") / "phone.mp4", N_SHOWN, PRIMED, FPS)


def test_the_file_really_has_packets_the_edit_list_cuts(primed):
    with av.open(str(primed)) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
    assert len(packets) == N_SHOWN + PRIMED and sum(p.is_discard for p in packets) == PRIMED


def test_timeline_rows_equal_the_decoded_frames_from_zero(primed):
    times = video_frame_times(primed)
    decoded = [(t, rgb) for t, rgb in iter_video_frames(primed)]
    assert len(times) == len(decoded) == N_SHOWN
    np.testing.assert_allclose(times, [t for t, _ in decoded], atol=1e-6)
    assert times[0] == 0.0 and (np.diff(times) > 0).all()
    assert abs(int(decoded[0][1].mean()) - 8 * PRIMED) <= 2  # the first shown frame, not a priming one
    rec = recording_from_video(primed)
    assert rec.num_steps == N_SHOWN and rec.times[0] == 0.0
    audio = read_audio(primed)
    assert abs(len(audio) / 16000 - N_SHOWN / FPS) < 0.1  # the audio shares the origin and the length


def test_labels_of_an_affwild2_annotation_land_on_the_shown_frames(primed, tmp_path):
    root = tmp_path / "aff"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "phone.mp4").write_bytes(primed.read_bytes())
    labels = np.round(np.linspace(-0.9, 0.9, N_SHOWN), 3)
    for split, folder in AFFWILD2_SPLIT_DIRS.items():
        d = root / AFFWILD2_ANNOTATION_DIR / folder
        d.mkdir(parents=True)
        if split == "train":
            (d / "phone.txt").write_text("valence,arousal\n" + "".join(f"{v},{-v}\n" for v in labels))
    rec = load_affwild2(root, splits=("train",))[0]  # length tolerance 0: rows = shown frames exactly
    assert rec.num_steps == N_SHOWN and rec.times[0] == 0.0
    np.testing.assert_allclose(rec.labels[:, 0], labels, atol=1e-6)
    np.testing.assert_allclose(rec.times, video_frame_times(primed))


def test_a_video_that_starts_after_its_audio_keeps_the_shared_origin(tmp_path):
    shifted = write_primed_mp4(tmp_path / "late.mp4", N_SHOWN, 0, FPS, audio=True, start_frame=12)
    times = video_frame_times(shifted)
    assert len(times) == N_SHOWN and times[0] == pytest.approx(0.5, abs=1e-3)  # audio starts at 0
    np.testing.assert_allclose(times, [t for t, _ in iter_video_frames(shifted)], atol=1e-6)
    alone = write_primed_mp4(tmp_path / "late_video_only.mp4", N_SHOWN, 0, FPS, audio=False, start_frame=12)
    assert video_frame_times(alone)[0] == pytest.approx(0.0, abs=1e-6)  # the video is the origin
