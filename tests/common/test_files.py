"""common.files: atomic writes with fsync, disk-full detection, content types, the hash cache."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common import files
from common.errors import IntegrityError
from common.lstm.registry import model_file
from common.schemas import ModelRecord
from common.store.base import ArtifactStore, ObjectInfo
from common.store.local import LocalStore


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files hashed from disk (not from the cache) during the test."""
    seen: list[str] = []
    real = hashlib.file_digest

    def counting(f: Any, digest: str) -> Any:
        seen.append(Path(f.name).name)
        return real(f, digest)

    monkeypatch.setattr(hashlib, "file_digest", counting)
    return seen


def test_atomic_write_fsyncs_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "sub" / "a.json"
    synced: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(not dest.exists())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    st, sha = files.atomic_write(dest, [b"ab", b"c"])
    assert synced == [True]  # once, while dest did not exist yet
    assert dest.read_bytes() == b"abc" and sha == hashlib.sha256(b"abc").hexdigest()
    assert st.st_size == 3 and dest.stat().st_mode & 0o777 == 0o644


def test_atomic_write_failure_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "a"
    dest.write_bytes(b"old")

    def dying() -> Iterator[bytes]:
        yield b"half"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(dest, dying())
    with pytest.raises(IntegrityError, match="nothing was written"):
        files.atomic_write(dest, [b"new"], expected_sha256="0" * 64)
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


@pytest.mark.parametrize(
    ("code", "full"), [(errno.ENOSPC, True), (errno.EDQUOT, True), (errno.EACCES, False)]
)
def test_disk_full_means_no_space_or_quota(code: int, full: bool) -> None:
    assert files.is_disk_full(OSError(code, os.strerror(code))) is full
    assert files.is_disk_full(ValueError("no space")) is False


def test_one_content_type_per_suffix() -> None:
    assert files.content_type("batches/b/t000001.abc") == "text/vnd.abc; charset=utf-8"
    assert files.content_type("models/x.keras") == "application/zip"
    assert files.content_type("batches/b/manifest.json") == "application/json"
    assert files.content_type("corpora/c/train.txt") == "text/plain; charset=utf-8"
    assert files.content_type("batches/b/t1.MID") == "audio/midi"
    assert files.content_type("no-suffix") == "application/octet-stream"


def test_a_file_is_hashed_once_while_unchanged(tmp_path: Path, hashes: list[str]) -> None:
    path = tmp_path / "m.keras"
    path.write_bytes(b"weights" * 1000)
    first = files.file_sha256(path)
    assert files.file_sha256(path) == first and hashes == ["m.keras"]
    files.verify_sha256(path, first, "model file")
    assert hashes == ["m.keras"]
    # Same size, same mtime, other bytes: the ctime still tells the change.
    st = path.stat()
    path.write_bytes(b"WEIGHTS" * 1000)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(IntegrityError, match="changed or replaced"):
        files.verify_sha256(path, first, "model file")
    assert hashes == ["m.keras", "m.keras"]


def test_a_written_file_is_not_hashed_again(tmp_path: Path, hashes: list[str]) -> None:
    _, sha = files.atomic_write(tmp_path / "t.wav", [b"RIFF" * 100])
    assert files.file_sha256(tmp_path / "t.wav") == sha and hashes == []


class _Bucket(ArtifactStore):
    """A store without local paths (like S3) that serves one model file from a folder."""

    description = "test bucket"

    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        return self.inner.put_bytes(key, data)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> ObjectInfo:
        return self.inner.put_file(key, path)

    def get_bytes(self, key: str) -> bytes:
        return self.inner.get_bytes(key)

    def get_file(self, key: str, dest: Path) -> ObjectInfo:
        return self.inner.get_file(key, dest)

    def info(self, key: str) -> ObjectInfo | None:
        return self.inner.info(key)

    def list(self, prefix: str) -> Iterator[str]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def url(self, key: str, expires_s: int = 3600) -> str:
        return self.inner.url(key, expires_s)

    def local_path(self, key: str) -> Path | None:
        return None


def test_a_downloaded_model_is_hashed_once_before_loading(
    tmp_path: Path, hashes: list[str]
) -> None:
    data = b"a model" * 5000
    model_id = hashlib.sha256(data).hexdigest()
    bucket = _Bucket(LocalStore(tmp_path / "bucket"))
    bucket.put_bytes(f"models/{model_id}.keras", data)
    record = ModelRecord.model_construct(id=model_id)
    hashes.clear()
    local = model_file(bucket, record, tmp_path / "cache")
    # The download was hashed as it was written; the registry's and the loader's checks are free.
    files.verify_sha256(local, model_id, "model file")
    assert hashes == []
    assert model_file(bucket, record, tmp_path / "cache") == local and hashes == []


# -- user paths ------------------------------------------------------------------------------------


def test_read_regular_file_refuses_devices_fifos_folders_and_big_files(tmp_path: Path) -> None:
    from common.errors import InvalidInputError, NotFoundError
    from common.files import read_regular_file

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)  # no writer: a blocking open or read would hang this test
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    for path, words in [(Path("/dev/zero"), "character device"), (pipe, "FIFO"),
                        (tmp_path, "folder"), (big, "more than the 100")]:  # fmt: skip
        with pytest.raises(InvalidInputError, match=words):
            read_regular_file(path, limit=100)
    with pytest.raises(NotFoundError):
        read_regular_file(tmp_path / "missing", limit=100)
    small = tmp_path / "small"
    small.write_bytes(b"x" * 100)
    assert read_regular_file(small, limit=100) == b"x" * 100
    link = tmp_path / "link"
    link.symlink_to(small)
    assert read_regular_file(link, limit=100) == b"x" * 100
    with pytest.raises(InvalidInputError, match="symbolic link"):
        read_regular_file(link, limit=100, follow_symlinks=False)


def test_write_output_file_replaces_a_symlink_and_refuses_devices(tmp_path: Path) -> None:
    from common.errors import InvalidInputError
    from common.files import output_dir, own_subdir, write_output_file

    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "out.txt"
    link.symlink_to(victim)
    write_output_file(link, b"new")
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_bytes() == b"new"
    for target, words in [(Path("/dev/null"), "character device"), (tmp_path, "folder")]:
        with pytest.raises(InvalidInputError, match=words):
            write_output_file(target, b"x")
    with pytest.raises(InvalidInputError, match="not a folder"):
        output_dir(victim)
    assert output_dir(tmp_path / "new" / "deep").is_dir()
    (tmp_path / "linked").symlink_to(tmp_path / "new", target_is_directory=True)
    with pytest.raises(InvalidInputError, match="symbolic link"):
        own_subdir(tmp_path / "linked")
