"""Where artifacts live: one `ArtifactStore` interface over a local directory and an S3 bucket.

Why one interface with two backends: embedded mode (no servers) and distributed mode (workers on
several machines sharing a bucket) must run the same code — a corpus import, a training checkpoint
or a rendered WAV is written and read by the same functions either way, so a test with the local
backend exercises the real code path. The two backends are kept behaviourally identical: the
same key rules, the same sort order of listings, the same exceptions. Tests run every case against
both (the S3 one against a real HTTP server).

Why the key rules are strict: keys are built from ids (batch, tune, model, run), never from user
text, and `validate_key` is the last guard that keeps a malformed id from escaping the data
directory (``..``, absolute paths) or producing keys that one backend accepts and the other
does not (spaces, unicode, empty segments).

Why writes are atomic: a worker can be killed at any moment (OOM, preemption, ``acks_late``
redelivery), and a reader must never see half a file. The local backend writes to a temporary file
in the destination's directory (hidden name, so never a valid key and never listed) and
``os.replace``-s it into place; S3 objects only appear once a PUT or multipart upload completes.
Downloads (`get_file`) use the same temp-file-and-rename pattern.

Why every object carries its SHA-256: models are identified by their hash and loaded by
TensorFlow, and a silently corrupted or swapped object must be caught before it is used. The local
backend computes the hash while writing (and, for `info`, from the file, cached by inode, size and
mtime). S3 keeps it in the object's user metadata ``sha256``; since S3 needs metadata *before* the
body, `put_file` hashes the file in a streaming first pass, then uploads it with ``upload_file``
(multipart for big files, one part in memory at a time), and refuses the upload if the file changed
meanwhile. Downloads recompute the hash while streaming and raise `IntegrityError` on mismatch.

Why errors are translated: callers decide to retry or give up from our error hierarchy alone
(`common.errors`), never from botocore exception types. An unreachable endpoint is a
`StorageError` (transient), a missing bucket or refused credentials a `ConfigError` (permanent:
retrying cannot fix settings), a missing key a `NotFoundError`, a full disk a `StorageFullError`.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import hashlib
import logging
import mimetypes
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from common.errors import (
    ConfigError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    PermanentError,
    StorageError,
    StorageFullError,
    TunebatchError,
)
from common.settings import Settings

__all__ = [
    "KEY_PATTERN",
    "ArtifactStore",
    "LocalStore",
    "ObjectInfo",
    "S3Store",
    "make_store",
    "validate_key",
]

logger = logging.getLogger(__name__)

#: One key segment: starts with a letter or digit, then letters, digits, '.', '_' or '-'.
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
#: A whole key: '/'-separated segments, no '..' anywhere (checked by the lookahead).
KEY_PATTERN = re.compile(rf"(?!.*\.\.){_SEGMENT}(?:/{_SEGMENT})*")
MAX_KEY_LENGTH = 1024

_CHUNK = 1 << 20  # bytes per read/write when streaming
_MAX_PRESIGN_S = 7 * 24 * 3600  # S3's limit for SigV4 presigned URLs
_EXTRA_CONTENT_TYPES = {".abc": "text/vnd.abc; charset=utf-8", ".keras": "application/zip"}


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a local file, read in blocks (models are hundreds of MB)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


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


def _is_valid_key(key: str) -> bool:
    return len(key) <= MAX_KEY_LENGTH and KEY_PATTERN.fullmatch(key) is not None


def _validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key, or a key followed by one '/'."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if isinstance(prefix, str) and prefix.endswith("/") else prefix)
    return prefix


def _content_type(key: str, content_type: str | None) -> str:
    if content_type:
        return content_type
    suffix = Path(key).suffix.lower()
    if suffix in _EXTRA_CONTENT_TYPES:
        return _EXTRA_CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(key, strict=False)
    return guessed or "application/octet-stream"


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


def _check_expires(expires_s: int) -> None:
    if not 1 <= expires_s <= _MAX_PRESIGN_S:
        raise InvalidInputError(
            f"URL lifetime {expires_s}s is out of range: use 1 to {_MAX_PRESIGN_S} seconds (7 days)"
        )


# ------------------------------------------------------------------------------------------------
# Local files
# ------------------------------------------------------------------------------------------------


def _read_chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


def _write_atomically(
    dest: Path, chunks: Iterable[bytes], *, fsync: bool, expected_sha256: str | None = None
) -> tuple[os.stat_result, str]:
    """Write `chunks` to a hidden temp file beside `dest`, then rename it over `dest`.

    Returns the written file's stat and SHA-256. On any failure (including a hash mismatch with
    `expected_sha256`) the temp file is removed and `dest` is untouched. OSErrors propagate.
    """
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
            if fsync:
                os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide artifacts from other users
            st = os.fstat(f.fileno())
        sha = digest.hexdigest()
        if expected_sha256 is not None and sha != expected_sha256.lower():
            raise IntegrityError(
                f"downloaded content for {dest.name} has SHA-256 {sha[:12]}…, but the store "
                f"recorded {expected_sha256[:12]}…: the object was changed or corrupted; "
                "nothing was written"
            )
        tmp.replace(dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return st, sha


def _os_error(exc: OSError, *, doing: str, where: Path, hint: str) -> TunebatchError:
    """Translate a filesystem error into our hierarchy (full disk, not writable, other)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
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


class LocalStore(ArtifactStore):
    """Artifacts as files under one root directory: ``<root>/<key>``."""

    #: Hashes of files already read, keyed by (path, inode, size, mtime_ns); bounded.
    _SHA_CACHE_SIZE = 4096

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.description = f"local directory {self.root}"
        self._fsync = True
        self._sha_cache: OrderedDict[tuple[str, int, int, int], str] = OrderedDict()
        self._lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _not_found(self, key: str) -> NotFoundError:
        return NotFoundError(f"no artifact {key!r} in {self.description}")

    def _remember(self, path: Path, st: os.stat_result, sha: str) -> None:
        with self._lock:
            self._sha_cache[(str(path), st.st_ino, st.st_size, st.st_mtime_ns)] = sha
            while len(self._sha_cache) > self._SHA_CACHE_SIZE:
                self._sha_cache.popitem(last=False)

    def _store(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        path = self._path(key)
        try:
            st, sha = _write_atomically(path, chunks, fsync=self._fsync)
        except OSError as exc:
            raise _os_error(
                exc,
                doing=f"writing {key!r}",
                where=self.root,
                hint="set TUNEBATCH_DATA_DIR to a writable directory",
            ) from exc
        self._remember(path, st, sha)
        logger.debug("stored %s (%d bytes) in %s", key, st.st_size, self.root)
        return ObjectInfo(key=key, size=st.st_size, sha256=sha)

    # -- API -------------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        return self._store(key, [bytes(data)])

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> ObjectInfo:
        validate_key(key)
        try:
            src = Path(path).open("rb")  # noqa: SIM115 - closed below, after the streaming write
        except OSError as exc:
            raise InvalidInputError(
                f"cannot store {path} as {key!r}: {exc.strerror or exc}"
            ) from exc
        with src:
            return self._store(key, _read_chunks(src))

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise self._not_found(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key!r} from {self.description}: {exc}") from exc

    def get_file(self, key: str, dest: Path) -> ObjectInfo:
        path = self._path(key)
        dest = Path(dest)
        try:
            src = path.open("rb")  # closed below, after the streaming write
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise self._not_found(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key!r} from {self.description}: {exc}") from exc
        with src:
            try:
                st, sha = _write_atomically(dest, _read_chunks(src), fsync=False)
            except OSError as exc:
                raise _os_error(
                    exc,
                    doing=f"copying {key!r} to {dest}",
                    where=dest.parent,
                    hint="choose a writable destination",
                ) from exc
        return ObjectInfo(key=key, size=st.st_size, sha256=sha)

    def info(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            f = path.open("rb")  # closed just below
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {key!r} from {self.description}: {exc}") from exc
        with f:
            # fstat and hash the same open file: a concurrent os.replace cannot mix two versions.
            st = os.fstat(f.fileno())
            cache_key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
            with self._lock:
                sha = self._sha_cache.get(cache_key)
            if sha is None:
                sha = hashlib.file_digest(f, "sha256").hexdigest()
                self._remember(path, st, sha)
        return ObjectInfo(key=key, size=st.st_size, sha256=sha)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        _validate_prefix(prefix)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[str]:
        base_rel = prefix.rpartition("/")[0]
        base = self.root / base_rel if base_rel else self.root
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            # Only descend where a key could still start with the prefix.
            dirnames[:] = [
                d
                for d in dirnames
                if (rel_dir + d + "/").startswith(prefix) or prefix.startswith(rel_dir + d + "/")
            ]
            for name in filenames:
                key = rel_dir + name
                # Temp files (".tmp-…") and foreign files are not valid keys: never listed.
                if key.startswith(prefix) and _is_valid_key(key):
                    keys.append(key)
        yield from sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return  # a "folder" of other keys, not an object: nothing to delete
        except OSError as exc:
            raise _os_error(
                exc,
                doing=f"deleting {key!r}",
                where=self.root,
                hint="set TUNEBATCH_DATA_DIR to a writable directory",
            ) from exc
        logger.debug("deleted %s from %s", key, self.root)

    def url(self, key: str, expires_s: int = 3600) -> str:
        _check_expires(expires_s)
        path = self._path(key)
        if not path.is_file():
            raise self._not_found(key)
        return path.as_uri()

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


# ------------------------------------------------------------------------------------------------
# S3 (AWS, MinIO, moto, anything that speaks the S3 API)
# ------------------------------------------------------------------------------------------------

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidToken",
        "ExpiredToken",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "XMinioServerNotInitialized",
    }
)


def _hash_file(path: Path) -> tuple[os.stat_result, str]:
    with path.open("rb") as f:
        st = os.fstat(f.fileno())
        return st, hashlib.file_digest(f, "sha256").hexdigest()


class S3Store(ArtifactStore):
    """Artifacts as objects ``<prefix><key>`` in one bucket of any S3-compatible server."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any = None,
    ) -> None:
        from boto3.s3.transfer import TransferConfig  # boto3 only where S3 is used

        if not isinstance(bucket, str) or not _BUCKET_NAME.fullmatch(bucket):
            raise ConfigError(
                f"invalid S3 bucket name {bucket!r}: use 3-63 lowercase letters, digits, '.' and "
                "'-' (set TUNEBATCH_S3_BUCKET)"
            )
        stripped = prefix.strip("/")
        if stripped:
            try:
                validate_key(stripped)
            except InvalidInputError as exc:
                raise ConfigError(
                    f"invalid S3 key prefix {prefix!r} (TUNEBATCH_S3_PREFIX)"
                ) from exc
        self.bucket = bucket
        self.prefix = f"{stripped}/" if stripped else ""
        self.endpoint_url = endpoint_url
        self.region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        where = f"at {endpoint_url}" if endpoint_url else f"(AWS, {region})"
        self.description = f"s3://{bucket}/{self.prefix} {where}"
        #: Multipart above 8 MiB, 8 MiB parts, a few parts in flight; files are read part by part
        #: from disk (``upload_file``), so memory stays at a few parts whatever the file size.
        self.transfer_config: Any = TransferConfig(
            multipart_threshold=8 << 20,
            multipart_chunksize=8 << 20,
            max_concurrency=4,
            preferred_transfer_client="classic",
        )
        self._given_client = client
        self._client_obj: Any = None
        self._client_pid = -1
        self._lock = threading.Lock()
        self._bucket_checked = False

    # -- client ----------------------------------------------------------------------------------

    @property
    def _client(self) -> Any:
        """The boto3 client, created lazily and again after a fork (pools must not be shared)."""
        if self._given_client is not None:
            return self._given_client
        with self._lock:
            if self._client_obj is None or self._client_pid != os.getpid():
                self._client_obj = self._make_client()
                self._client_pid = os.getpid()
            return self._client_obj

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=5,
            read_timeout=60,
            # Newer botocore adds CRC checksums to every request by default; MinIO and other
            # S3-compatibles may reject them. Only send/verify them where the API requires it.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A private session: boto3's default session is not thread-safe, and explicit keys
        # (when given) win over the environment and ~/.aws.
        session = boto3.session.Session(
            aws_access_key_id=self._access_key_id,
            aws_secret_access_key=self._secret_access_key,
            region_name=self.region,
        )
        return session.client("s3", endpoint_url=self.endpoint_url, config=config)

    # -- errors ----------------------------------------------------------------------------------

    def _full(self, key: str) -> str:
        full = self.prefix + validate_key(key)
        if len(full) > MAX_KEY_LENGTH:
            raise InvalidInputError(
                f"artifact key {key!r} with prefix {self.prefix!r} is longer than "
                f"{MAX_KEY_LENGTH} characters"
            )
        return full

    def _endpoint(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"

    def _translate(self, exc: BaseException, doing: str, key: str) -> TunebatchError | None:
        """Our error for a boto3/botocore exception, or None when it is not one of theirs."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            ParamValidationError,
            PartialCredentialsError,
        )

        if isinstance(exc, S3UploadFailedError):
            # boto3 wraps the ClientError of an upload without chaining it explicitly.
            inner = exc.__cause__ or exc.__context__
            if inner is not None and inner is not exc:
                translated = self._translate(inner, doing, key)
                if translated is not None:
                    return translated
            return StorageError(f"{doing} {key!r} in {self.description} failed: {exc}")
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            message = str(error.get("Message", "")) or code
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code == "NoSuchBucket":
                return self._no_bucket()
            if code in _NOT_FOUND_CODES:
                return NotFoundError(f"no artifact {key!r} in {self.description}")
            if code in _DENIED_CODES or status == 403:
                return ConfigError(
                    f"{self._endpoint()} refused {doing} {key!r} in bucket {self.bucket!r} "
                    f"({code}: {message}); check TUNEBATCH_S3_ACCESS_KEY_ID, "
                    "TUNEBATCH_S3_SECRET_ACCESS_KEY and the bucket's policy"
                )
            if code in ("PreconditionFailed", "412"):
                return StorageError(f"{key!r} in {self.description} changed while {doing}; retry")
            if code == "XMinioStorageFull":
                return StorageFullError(
                    f"{self._endpoint()} is out of space while {doing} {key!r} ({message}); "
                    "free space on the bucket server and retry"
                )
            if code in _TRANSIENT_CODES or status >= 500 or status in (408, 429):
                return StorageError(
                    f"{self._endpoint()} failed {doing} {key!r} ({code}: {message}); retry later"
                )
            return PermanentError(
                f"{self._endpoint()} rejected {doing} {key!r} in bucket {self.bucket!r} "
                f"({code}: {message})"
            )
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return ConfigError(
                f"no usable S3 credentials for {self.description} ({exc}); set "
                "TUNEBATCH_S3_ACCESS_KEY_ID and TUNEBATCH_S3_SECRET_ACCESS_KEY"
            )
        if isinstance(exc, ParamValidationError):
            return InvalidInputError(f"bad S3 request while {doing} {key!r}: {exc}")
        if isinstance(exc, ConnectionError | HTTPClientError):
            return StorageError(
                f"cannot reach the S3 endpoint {self._endpoint()} while {doing} {key!r} "
                f"({type(exc).__name__}: {exc}); is the bucket server up?"
            )
        if isinstance(exc, BotoCoreError):
            return StorageError(f"S3 error while {doing} {key!r} in {self.description}: {exc}")
        return None

    @contextlib.contextmanager
    def _errors(self, doing: str, key: str) -> Iterator[None]:
        try:
            yield
        except TunebatchError:
            raise
        except Exception as exc:
            translated = self._translate(exc, doing, key)
            if translated is None:
                raise
            raise translated from exc

    def _no_bucket(self) -> ConfigError:
        return ConfigError(
            f"bucket {self.bucket!r} does not exist at {self._endpoint()}; create it "
            "(e.g. `mc mb` or `aws s3 mb`) or set TUNEBATCH_S3_BUCKET to an existing bucket"
        )

    def _check_bucket(self) -> None:
        """Tell a missing bucket from a missing key after a HEAD 404 (HEAD has no error body)."""
        if self._bucket_checked:
            return
        from botocore.exceptions import ClientError

        with self._errors("checking bucket", ""):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    raise self._no_bucket() from exc
                raise
        self._bucket_checked = True

    def _verify(self, key: str, data_sha: str, expected: str | None) -> None:
        if expected and data_sha != expected.lower():
            logger.warning("SHA-256 mismatch for %s in %s", key, self.description)
            raise IntegrityError(
                f"artifact {key!r} in {self.description} has SHA-256 {data_sha[:12]}…, but its "
                f"metadata says {expected[:12]}…: it was changed or corrupted after upload"
            )

    # -- API -------------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        full = self._full(key)
        sha = hashlib.sha256(data).hexdigest()
        with self._errors("uploading", key):
            self._client.put_object(
                Bucket=self.bucket,
                Key=full,
                Body=bytes(data),
                ContentType=_content_type(key, content_type),
                Metadata={"sha256": sha},
            )
        self._bucket_checked = True
        logger.debug("stored %s (%d bytes) in %s", key, len(data), self.description)
        return ObjectInfo(key=key, size=len(data), sha256=sha)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> ObjectInfo:
        full = self._full(key)
        path = Path(path)
        try:
            before, sha = _hash_file(path)
        except OSError as exc:
            raise InvalidInputError(
                f"cannot store {path} as {key!r}: {exc.strerror or exc}"
            ) from exc
        with self._errors("uploading", key):
            self._client.upload_file(
                str(path),
                self.bucket,
                full,
                ExtraArgs={
                    "ContentType": _content_type(key, content_type),
                    "Metadata": {"sha256": sha},
                },
                Config=self.transfer_config,
            )
        try:
            after = path.stat()
            changed = (after.st_ino, after.st_size, after.st_mtime_ns) != (
                before.st_ino,
                before.st_size,
                before.st_mtime_ns,
            )
        except OSError:
            changed = True  # deleted or replaced meanwhile
        if changed:
            # The uploaded bytes may not match the hash in the metadata: do not leave them.
            with contextlib.suppress(TunebatchError), self._errors("deleting", key):
                self._client.delete_object(Bucket=self.bucket, Key=full)
            raise StorageError(f"{path} changed while it was uploaded as {key!r}; retry")
        self._bucket_checked = True
        logger.debug("stored %s (%d bytes) in %s", key, before.st_size, self.description)
        return ObjectInfo(key=key, size=before.st_size, sha256=sha)

    def get_bytes(self, key: str) -> bytes:
        full = self._full(key)
        with self._errors("downloading", key):
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            with contextlib.closing(response["Body"]) as body:
                data: bytes = body.read()
        self._verify(
            key, hashlib.sha256(data).hexdigest(), response.get("Metadata", {}).get("sha256")
        )
        return data

    def get_file(self, key: str, dest: Path) -> ObjectInfo:
        # One GET streamed to disk: body and metadata come from the same response, so the hash
        # check cannot be fooled by an overwrite between a HEAD and the download.
        from botocore.exceptions import BotoCoreError

        full = self._full(key)
        dest = Path(dest)
        with self._errors("downloading", key):
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            expected = response.get("Metadata", {}).get("sha256")
            with contextlib.closing(response["Body"]) as body:
                try:
                    st, sha = _write_atomically(
                        dest, body.iter_chunks(_CHUNK), fsync=False, expected_sha256=expected
                    )
                except IntegrityError:
                    logger.warning("SHA-256 mismatch for %s in %s", key, self.description)
                    raise IntegrityError(
                        f"artifact {key!r} in {self.description} does not match the SHA-256 in "
                        "its metadata: it was changed or corrupted after upload; "
                        f"{dest} was not written"
                    ) from None
                except BotoCoreError:
                    raise  # some of botocore's network errors are OSErrors too: not ours
                except OSError as exc:
                    raise _os_error(
                        exc,
                        doing=f"downloading {key!r} to {dest}",
                        where=dest.parent,
                        hint="choose a writable destination",
                    ) from exc
        return ObjectInfo(key=key, size=st.st_size, sha256=sha)

    def info(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        full = self._full(key)
        with self._errors("inspecting", key):
            try:
                response = self._client.head_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status == 404:
                    self._check_bucket()
                    return None
                raise
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            sha256=str(response.get("Metadata", {}).get("sha256", "")),
        )

    def list(self, prefix: str) -> Iterator[str]:
        _validate_prefix(prefix)
        full = self.prefix + prefix
        return self._list(full, prefix)

    def _list(self, full_prefix: str, prefix: str) -> Iterator[str]:
        # S3 returns keys in UTF-8 byte order; keys are ASCII, so that is Python's sort order.
        with self._errors("listing", prefix):
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for obj in page.get("Contents", []):
                    key = str(obj["Key"])[len(self.prefix) :]
                    if _is_valid_key(key):
                        yield key
                    else:
                        logger.debug("skipping foreign object %r in %s", key, self.description)

    def delete(self, key: str) -> None:
        full = self._full(key)
        with self._errors("deleting", key):
            self._client.delete_object(Bucket=self.bucket, Key=full)
        logger.debug("deleted %s from %s", key, self.description)

    def url(self, key: str, expires_s: int = 3600) -> str:
        _check_expires(expires_s)
        if self.info(key) is None:
            raise NotFoundError(f"no artifact {key!r} in {self.description}")
        with self._errors("presigning", key):
            url: str = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._full(key)},
                ExpiresIn=expires_s,
            )
        return url

    def local_path(self, key: str) -> Path | None:
        validate_key(key)
        return None


def make_store(settings: Settings) -> ArtifactStore:
    """The store the settings describe: the bucket when one is named, else the data directory."""
    if settings.s3_bucket:
        secret = settings.s3_secret_access_key
        return S3Store(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
        )
    return LocalStore(settings.data_dir)
