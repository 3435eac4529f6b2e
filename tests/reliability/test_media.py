"""Audio is served only from the data directory: `..`, absolute paths elsewhere, symlinks that
point out, NUL bytes and missing files are all refused."""

from __future__ import annotations

import os

import pytest

from backend.media import MediaError, resolve_audio


@pytest.fixture
def audio(sqlite_runtime):
    clip = sqlite_runtime.settings.audio_dir / "prompts" / "ok.wav"
    clip.parent.mkdir(parents=True, exist_ok=True)
    clip.write_bytes(b"RIFF")
    return clip


def test_a_stored_clip_resolves(sqlite_runtime, audio):
    assert resolve_audio(sqlite_runtime, str(audio)) == audio.resolve()
    relative = audio.relative_to(sqlite_runtime.settings.data_dir)
    assert resolve_audio(sqlite_runtime, str(relative)) == audio.resolve()


def test_escapes_are_refused(sqlite_runtime, audio, tmp_path):
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF")
    link = audio.parent / "link.wav"
    os.symlink(secret, link)
    dotdot = str(audio.parent / ".." / ".." / ".." / "secret.wav")
    for bad in (str(secret), dotdot, str(link), "/etc/passwd", "../../etc/passwd"):
        with pytest.raises(MediaError, match="outside the data directory"):
            resolve_audio(sqlite_runtime, bad)


def test_non_audio_files_in_the_data_directory_are_refused(sqlite_runtime, audio):
    data = sqlite_runtime.settings.data_dir
    link = audio.parent / "db.wav"  # a .wav name that resolves to the database
    os.symlink(data / "studio.db", link)
    for bad in ("studio.db", str(data / "studio.db"), str(link)):
        with pytest.raises(MediaError, match="not an audio file"):
            resolve_audio(sqlite_runtime, bad)


@pytest.mark.parametrize("bad, message", [
    (None, "no audio"), ("", "no audio"), ("clip\x00.wav", "no audio"),
    ("audio/prompts/missing.wav", "not found"),
])
def test_empty_nul_and_missing_are_refused(sqlite_runtime, audio, bad, message):
    with pytest.raises(MediaError, match=message):
        resolve_audio(sqlite_runtime, bad)


def test_private_copies_for_downloads_do_not_pile_up(tmp_path, monkeypatch):
    """An admin's download is a copy in its own 0700 temp dir; copies older than an hour are
    removed when the next one is made."""
    import os
    import tempfile
    import time

    from backend.files import private_copy

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    src = tmp_path / "judgments.csv"
    src.write_text("id\n1\n")
    first = private_copy(src)
    assert first.read_text() == "id\n1\n" and first.parent != src.parent
    assert oct(first.parent.stat().st_mode & 0o777) == "0o700"
    old = time.time() - 7200
    os.utime(first.parent, (old, old))
    second = private_copy(src)
    assert second.is_file() and not first.exists()
