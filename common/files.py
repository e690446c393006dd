"""Local file rules every module shares: atomic writes, disk-full detection, content types, hashes.

Why atomic writes with fsync: a worker can be killed at any moment (OOM, preemption, ``acks_late``
redelivery) and a machine can lose power; a reader must never see half a file, and a file that a
record already points to must survive a crash. So every write goes to a hidden temp file in the
destination's directory (never a valid artifact key, never listed), is flushed and fsync-ed, and
is renamed over the destination.

Why user paths are opened the way they are: a path a command reads may name a device
(``/dev/zero``: endless), a FIFO (blocks forever) or a symlink planted in a shared folder. So a
file read whole is opened non-blocking, checked with ``fstat`` to be a regular file and read
only up to a limit (`read_regular_file`); a file a command writes replaces whatever is at its
name with a new regular file (`write_output_file`: a symlink there is replaced, never written
through; a device or folder is refused); a folder it writes into must be one (`output_dir`).

Why one hash cache: models are hundreds of MB and are checked before every load, a download is
hashed while it is written, and callers check again before use. The cache is keyed by the file's
identity and its change stamps (device, inode, size, mtime, ctime), so a file changed or replaced
behind our back is hashed afresh, while the same unchanged file is hashed once per process.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import mimetypes
import os
import stat
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from common import formats
from common.errors import IntegrityError, InvalidInputError, NotFoundError

__all__ = [
    "CHUNK",
    "CONTENT_TYPES",
    "atomic_write",
    "atomic_write_text",
    "content_type",
    "file_sha256",
    "is_disk_full",
    "output_dir",
    "own_subdir",
    "read_chunks",
    "read_regular_file",
    "remember_sha256",
    "sha256_of_open",
    "verify_sha256",
    "write_output_file",
]

CHUNK = 1 << 20  # bytes per read/write when streaming

#: The content type of each artifact suffix; anything else is guessed from the name. The output
#: formats' types are the formats table's (`common.formats`); these are the other files
#: we store: models, records, corpus text, training arrays.
CONTENT_TYPES = {
    **{fmt.suffix: fmt.content_type for fmt in formats.TABLE},
    ".keras": "application/zip",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".npz": "application/octet-stream",
}

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk or the user's quota is full (both are cured by freeing space)."""
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL


def content_type(name: str) -> str:
    """The content type for a key or file name, from its suffix."""
    suffix = Path(name).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def read_chunks(f: IO[bytes]) -> Iterator[bytes]:
    """The rest of an open binary file in `CHUNK`-sized pieces."""
    while chunk := f.read(CHUNK):
        yield chunk


# -- hashes ---------------------------------------------------------------------------------------

_StatKey = tuple[str, int, int, int, int, int]
_SHA_CACHE_SIZE = 4096
_sha_cache: OrderedDict[_StatKey, str] = OrderedDict()
_sha_lock = threading.Lock()


def _stat_key(path: Path, st: os.stat_result) -> _StatKey:
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def remember_sha256(path: Path, st: os.stat_result, sha: str) -> None:
    """Record that the file at `path`, as `st` describes it, has SHA-256 `sha`."""
    key = _stat_key(Path(path).absolute(), st)
    with _sha_lock:
        _sha_cache[key] = sha
        _sha_cache.move_to_end(key)
        while len(_sha_cache) > _SHA_CACHE_SIZE:
            _sha_cache.popitem(last=False)


def sha256_of_open(path: Path, f: io.BufferedReader) -> tuple[os.stat_result, str]:
    """Stat and hash of an open file (one file: a concurrent replace cannot mix two versions)."""
    st = os.fstat(f.fileno())
    key = _stat_key(Path(path).absolute(), st)
    with _sha_lock:
        sha = _sha_cache.get(key)
    if sha is None:
        sha = hashlib.file_digest(f, "sha256").hexdigest()
        remember_sha256(path, st, sha)
    return st, sha


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a local file, read in blocks, computed once while the file is unchanged."""
    with Path(path).open("rb") as f:
        return sha256_of_open(path, f)[1]


def verify_sha256(path: Path, expected: str, what: str) -> None:
    """`IntegrityError` unless the file at `path` has SHA-256 `expected`; `what` names it."""
    actual = file_sha256(path)
    if actual != expected.lower():
        raise IntegrityError(
            f"{what} {path} has SHA-256 {actual[:12]}…, but its record says {expected[:12]}…: "
            "it was changed or replaced; refusing to use it (delete it to fetch it again)"
        )


# -- atomic writes --------------------------------------------------------------------------------


def atomic_write(
    dest: Path, chunks: Iterable[bytes], *, expected_sha256: str | None = None, mode: int = 0o644
) -> tuple[os.stat_result, str]:
    """Write `chunks` to a hidden temp file beside `dest`, fsync it, then rename it over `dest`.

    Returns the written file's stat and SHA-256 (and remembers the hash, so `file_sha256` of the
    new file is free). On any failure, including a hash mismatch with `expected_sha256`
    (`IntegrityError`), the temp file is removed and `dest` is untouched. OSErrors propagate: tell
    a full disk with `is_disk_full`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                digest.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)  # mkstemp's 0600 would hide artifacts from other users
            sha = digest.hexdigest()
            if expected_sha256 is not None and sha != expected_sha256.lower():
                raise IntegrityError(
                    f"content for {dest.name} has SHA-256 {sha[:12]}…, but the store recorded "
                    f"{expected_sha256[:12]}…: the object was changed or corrupted; nothing was "
                    "written"
                )
            tmp.replace(dest)
            # Stat the open file after the rename (a rename changes its ctime): the hash is then
            # remembered for exactly the file now at `dest`.
            st = os.fstat(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    remember_sha256(dest, st, sha)
    return st, sha


def atomic_write_text(dest: Path, text: str) -> None:
    """`atomic_write` of one UTF-8 text."""
    atomic_write(dest, [text.encode("utf-8")])


# -- user paths: regular files only, never through a symlink -------------------------------------


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    kinds = [
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_regular_file(
    path: Path, *, limit: int, what: str = "file", follow_symlinks: bool = True
) -> bytes:
    """The bytes of the regular file at `path`; `InvalidInputError` for anything else.

    Opened non-blocking (a FIFO with no writer does not block the open) and checked with
    ``fstat`` on the open file (no race with a swap after a check): a device, FIFO, socket or
    folder is refused, and so is a file larger than `limit` bytes, before anything is read; the
    read itself stops at `limit` + 1 bytes (a file that grows meanwhile). Without
    `follow_symlinks`, a symlink at `path` itself is refused too.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise NotFoundError(f"{what} {path} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise InvalidInputError(f"{what} {path} is a symbolic link; not followed") from None
        raise InvalidInputError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInputError(
                f"{what} {path} is {_kind(st.st_mode)}, not a regular file: give a file"
            )
        if st.st_size > limit:
            raise InvalidInputError(
                f"{what} {path} is {st.st_size:,} bytes, more than the {limit:,} this reads"
            )
        os.set_blocking(fd, True)
        data = bytearray()
        while len(data) <= limit and (chunk := os.read(fd, min(CHUNK, limit + 1 - len(data)))):
            data += chunk
        if len(data) > limit:
            raise InvalidInputError(f"{what} {path} grew past {limit:,} bytes while it was read")
        return bytes(data)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def output_dir(path: Path, what: str = "folder") -> Path:
    """`path` as a folder to write into, made if missing; `InvalidInputError` (one line, no
    traceback) when it is a file, a device or cannot be made."""
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInputError(f"cannot make {what} {path}: {exc.strerror}") from None
        return Path(path)
    except OSError as exc:
        raise InvalidInputError(f"cannot use {what} {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidInputError(
            f"{what} {path} is {_kind(st.st_mode)}, not a folder: give a folder"
        )
    return Path(path)


def own_subdir(path: Path, what: str = "folder") -> Path:
    """A folder this program makes inside a folder it was given: made if missing, refused when
    something else (a symlink planted there included) holds its name."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return output_dir(path, what)
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidInputError(
            f"{what} {path} is {_kind(st.st_mode)}, not a folder: refusing to write through it"
        )
    return Path(path)


def write_output_file(path: Path, data: bytes, what: str = "file") -> None:
    """Write `data` as a new regular file at `path`, atomically (`atomic_write`).

    Whatever holds the name is replaced, never written through: a symlink there is replaced by
    the file (its target is untouched). A folder, device, FIFO or socket at `path` is refused
    with one clear line (`InvalidInputError`), and so is a write the system refuses.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise InvalidInputError(f"cannot write {what} {path}: {exc.strerror}") from None
    else:
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise InvalidInputError(
                f"{what} {path} is {_kind(st.st_mode)}: give the name of a file to write"
            )
    try:
        atomic_write(path, [data])
    except OSError as exc:
        if is_disk_full(exc):
            raise
        raise InvalidInputError(f"cannot write {what} {path}: {exc.strerror}") from None
