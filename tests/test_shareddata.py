"""The ../shared rule: skip on a user's machine, fail under CI."""

from __future__ import annotations

import pytest
from shareddata import SHARED, require


def test_missing_shared_file_skips_without_ci(monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="nothing.bin"):
        require(tmp_path / "nothing.bin", "a shared file")


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_missing_shared_file_fails_under_ci(monkeypatch, tmp_path, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI must have it"):
        require(tmp_path / "nothing.bin", "a shared file")


def test_present_file_is_returned(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require(SHARED.parent, "the clone's parent") == SHARED.parent
