"""The S3 backend of `ArtifactStore`: objects ``<prefix><key>`` in one bucket (AWS, MinIO, moto).

Why the hash is in the metadata: S3 keeps each object's SHA-256 in its user metadata ``sha256``.
S3 needs metadata *before* the body, so `put_file` hashes the file in a streaming first pass, then
uploads it with ``upload_file`` (multipart for big files, one part in memory at a time), and
refuses the upload if the file changed meanwhile. Objects only appear once a PUT or multipart
upload completes, so readers never see half an object.

Why boto3 is imported lazily: the producer's commands that never touch a bucket stay fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import files
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
from common.store.base import (
    MAX_KEY_LENGTH,
    ArtifactStore,
    ObjectInfo,
    check_expires,
    is_valid_key,
    os_error,
    validate_key,
    validate_prefix,
)

__all__ = ["S3Store"]

logger = logging.getLogger(__name__)


def _hash_file(path: Path) -> tuple[os.stat_result, str]:
    with path.open("rb") as f:
        return files.sha256_of_open(path, f)


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
                ContentType=content_type or files.content_type(key),
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
                    "ContentType": content_type or files.content_type(key),
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
                    st, sha = files.atomic_write(
                        dest, body.iter_chunks(files.CHUNK), expected_sha256=expected
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
                    raise os_error(
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
        validate_prefix(prefix)
        full = self.prefix + prefix
        return self._list(full, prefix)

    def _list(self, full_prefix: str, prefix: str) -> Iterator[str]:
        # S3 returns keys in UTF-8 byte order; keys are ASCII, so that is Python's sort order.
        with self._errors("listing", prefix):
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for obj in page.get("Contents", []):
                    key = str(obj["Key"])[len(self.prefix) :]
                    if is_valid_key(key):
                        yield key
                    else:
                        logger.debug("skipping foreign object %r in %s", key, self.description)

    def delete(self, key: str) -> None:
        full = self._full(key)
        with self._errors("deleting", key):
            self._client.delete_object(Bucket=self.bucket, Key=full)
        logger.debug("deleted %s from %s", key, self.description)

    def url(self, key: str, expires_s: int = 3600) -> str:
        check_expires(expires_s)
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
