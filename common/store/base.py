"""The `ArtifactStore` interface: flat keys to bytes, with the key rules both backends share.

Why one interface with two backends (`common.store.local`, `common.store.s3`): embedded mode (no
servers) and distributed mode (workers on several machines sharing a bucket) must run the same
code, so a corpus import, a training checkpoint or a rendered WAV is written and read by the same
functions either way, and a test with the local backend exercises the real code path. The two
backends are kept behaviourally identical: the same key rules, the same sort order of listings,
the same exceptions. Tests run every case against both (the S3 one against a real HTTP server).

Why the key rules are strict: keys are built from ids (batch, tune, model, run), never from user
text, and `validate_key` is the last guard that keeps a malformed id from escaping the data
directory (``..``, absolute paths) or producing keys that one backend accepts and the other
does not (spaces, unicode, empty segments).

Why writes are atomic and every object carries its SHA-256: a reader must never see half a file,
and models are identified by their hash and loaded by TensorFlow, so a silently corrupted or
swapped object must be caught before it is used (see `common.files`). Downloads recompute the
hash while streaming and raise `IntegrityError` on a mismatch.

Why errors are translated: callers decide to retry or give up from our error hierarchy alone
(`common.errors`), never from botocore or OS exception types. An unreachable endpoint is a
`StorageError` (transient), a missing bucket or refused credentials a `ConfigError` (permanent:
retrying cannot fix settings), a missing key a `NotFoundError`, a full disk a `StorageFullError`.
"""

from __future__ import annotations

import abc
import errno
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common.errors import (
    ConfigError,
    InvalidInputError,
    StorageError,
    StorageFullError,
    TunebatchError,
)
from common.files import is_disk_full

__all__ = [
    "KEY_PATTERN",
    "MAX_KEY_LENGTH",
    "ArtifactStore",
    "ObjectInfo",
    "check_expires",
    "is_valid_key",
    "os_error",
    "validate_key",
    "validate_prefix",
]

#: One key segment: starts with a letter or digit, then letters, digits, '.', '_' or '-'.
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
#: A whole key: '/'-separated segments, no '..' anywhere (checked by the lookahead).
KEY_PATTERN = re.compile(rf"(?!.*\.\.){_SEGMENT}(?:/{_SEGMENT})*")
MAX_KEY_LENGTH = 1024

_MAX_PRESIGN_S = 7 * 24 * 3600  # S3's limit for SigV4 presigned URLs


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a well-formed artifact key; else `InvalidInputError`."""
    if not isinstance(key, str):
        raise InvalidInputError(f"artifact key must be a string, not {type(key).__name__}")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInputError(
            f"artifact key is {len(key)} characters long, more than {MAX_KEY_LENGTH}: {key[:60]!r}…"
        )
    if not KEY_PATTERN.fullmatch(key):
        raise InvalidInputError(
            f"malformed artifact key {key!r}: keys are '/'-separated segments of letters, digits, "
            "'.', '_' and '-', each starting with a letter or digit, with no '..' and no leading "
            "'/' (keys are built from ids; this one was not)"
        )
    return key


def is_valid_key(key: str) -> bool:
    """Whether `key` is well formed (listings skip foreign objects and temp files with it)."""
    return len(key) <= MAX_KEY_LENGTH and KEY_PATTERN.fullmatch(key) is not None


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key, or a key followed by one '/'."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if isinstance(prefix, str) and prefix.endswith("/") else prefix)
    return prefix


def check_expires(expires_s: int) -> None:
    """`InvalidInputError` unless a URL lifetime is one that S3 can sign."""
    if not 1 <= expires_s <= _MAX_PRESIGN_S:
        raise InvalidInputError(
            f"URL lifetime {expires_s}s is out of range: use 1 to {_MAX_PRESIGN_S} seconds (7 days)"
        )


def os_error(exc: OSError, *, doing: str, where: Path, hint: str) -> TunebatchError:
    """Translate a filesystem error into our hierarchy (full disk, not writable, other)."""
    reason = exc.strerror or str(exc)
    if is_disk_full(exc):
        return StorageFullError(
            f"no space left while {doing} in {where} ({reason}); free some space and retry"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ConfigError(f"{where} is not writable ({reason}) while {doing}; {hint}")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return InvalidInputError(
            f"cannot write {where} while {doing} ({reason}): a key cannot be both an object "
            "and a folder of other keys"
        )
    return StorageError(f"filesystem error while {doing} in {where}: {reason}")


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one stored artifact."""

    key: str
    size: int
    #: Hex SHA-256 of the content. Empty for an S3 object not written by this module (no metadata).
    sha256: str


class ArtifactStore(abc.ABC):
    """Flat key → bytes storage with atomic writes, content hashes and sorted listings."""

    #: Where the store is, for messages: "local directory /abs/path", "s3://bucket/prefix at …".
    description: str

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        """Store `data` under `key`, replacing any previous object atomically."""

    @abc.abstractmethod
    def put_file(self, key: str, path: Path, content_type: str | None = None) -> ObjectInfo:
        """Store the file at `path` under `key`, streaming (never the whole file in memory)."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The content of `key`; `NotFoundError` when absent."""

    @abc.abstractmethod
    def get_file(self, key: str, dest: Path) -> ObjectInfo:
        """Stream `key` into `dest` atomically (temp file + rename), creating parent folders."""

    @abc.abstractmethod
    def info(self, key: str) -> ObjectInfo | None:
        """Size and hash of `key`, or None when absent."""

    def exists(self, key: str) -> bool:
        """Whether `key` is stored."""
        return self.info(key) is not None

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Keys starting with `prefix` (a plain string prefix, like S3's), in sorted order."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; nothing happens when it is absent."""

    @abc.abstractmethod
    def url(self, key: str, expires_s: int = 3600) -> str:
        """A URL to download `key` (S3: presigned GET; local: file://); NotFoundError if absent."""

    @abc.abstractmethod
    def local_path(self, key: str) -> Path | None:
        """The path where a local store keeps `key` (whether or not it exists); None for S3."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"
