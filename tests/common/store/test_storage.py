"""ArtifactStore: both backends, same behaviour. S3 runs against a real HTTP server (moto)."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import common.store.local as local_module
from common.errors import (
    ConfigError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    PermanentError,
    StorageError,
    StorageFullError,
)
from common.settings import Settings
from common.store.base import KEY_PATTERN, ArtifactStore, ObjectInfo, validate_key
from common.store.local import LocalStore
from common.store.open import make_store
from common.store.s3 import S3Store
from tests import servers as srv

S3_PREFIX = "team-a/"
MiB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_s3_store(endpoint: str, bucket: str, **kwargs: Any) -> S3Store:
    return S3Store(
        bucket,
        endpoint_url=endpoint,
        access_key_id=srv.FAKE_ACCESS_KEY_ID,
        secret_access_key=srv.FAKE_SECRET_ACCESS_KEY,
        **kwargs,
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return make_s3_store(endpoint, bucket, prefix=S3_PREFIX)


@pytest.fixture
def s3_store(s3_bucket: tuple[str, str]) -> S3Store:
    endpoint, bucket = s3_bucket
    return make_s3_store(endpoint, bucket, prefix=S3_PREFIX)


def write_random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        remaining = size
        while remaining:
            chunk = os.urandom(min(MiB, remaining))
            digest.update(chunk)
            f.write(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Hidden temp files left behind in `folder` (there must never be any)."""
    return sorted(p.name for p in folder.rglob(".tmp-*"))


# ------------------------------------------------------------------------------------------------
# keys
# ------------------------------------------------------------------------------------------------

GOOD_KEYS = [
    "a",
    "batches/b-1/tunes/0001.abc",
    "models/3f2a.keras",
    "A_b-c.d/e",
    "x" * 128,
    "/".join(["y" * 127] * 8),  # 1023 characters
]
BAD_KEYS = [
    "",
    "../x",
    "/abs",
    "a b",
    "a/../b",
    "a/./b",
    "a//b",
    "a/",
    ".hidden",
    "a/.tmp-123.part",
    "a..b",
    "tune\u00e9",
    "a\x00b",
    "a\n",
    "a\\b",
    "~/x",
    "x" * 129,
    "/".join(["y" * 128] * 8),  # 1031 characters
]


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_validate_key_accepts(key: str) -> None:
    assert validate_key(key) == key
    assert KEY_PATTERN.fullmatch(key)


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_validate_key_rejects(key: str) -> None:
    with pytest.raises(InvalidInputError, match="key"):
        validate_key(key)


def test_validate_key_rejects_non_strings() -> None:
    with pytest.raises(InvalidInputError):
        validate_key(b"a")  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["../x", "/abs", "a b", "a/../b", "", "a//b"], ids=repr)
def test_every_method_validates_keys(store: ArtifactStore, key: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"x")
    calls: list[Callable[[], object]] = [
        lambda: store.put_bytes(key, b"x"),
        lambda: store.put_file(key, src),
        lambda: store.get_bytes(key),
        lambda: store.get_file(key, tmp_path / "dest"),
        lambda: store.info(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.url(key),
        lambda: store.local_path(key),
    ]
    for call in calls:
        with pytest.raises(InvalidInputError):
            call()
    assert not (tmp_path / "dest").exists()
    assert not (tmp_path / "x").exists()  # "../x" did not escape the store's root


@pytest.mark.parametrize("prefix", ["../", "/abs/", "a b/", "a//"], ids=repr)
def test_list_validates_prefix_eagerly(store: ArtifactStore, prefix: str) -> None:
    with pytest.raises(InvalidInputError):
        store.list(prefix)  # raises at the call, not at the first next()


# ------------------------------------------------------------------------------------------------
# round trips
# ------------------------------------------------------------------------------------------------


def test_bytes_round_trip(store: ArtifactStore) -> None:
    data = b"X:1\nT:The Kesh\nK:G\nGAG GAB|\n"
    info = store.put_bytes("batches/b1/tunes/t1.abc", data, "text/plain")
    assert info == ObjectInfo("batches/b1/tunes/t1.abc", len(data), sha(data))
    assert store.get_bytes("batches/b1/tunes/t1.abc") == data
    assert store.info("batches/b1/tunes/t1.abc") == info
    assert store.exists("batches/b1/tunes/t1.abc")

    # Overwriting replaces content and hash.
    info2 = store.put_bytes("batches/b1/tunes/t1.abc", b"other")
    assert info2 == ObjectInfo("batches/b1/tunes/t1.abc", 5, sha(b"other"))
    assert store.get_bytes("batches/b1/tunes/t1.abc") == b"other"
    assert store.info("batches/b1/tunes/t1.abc") == info2


def test_empty_object(store: ArtifactStore, tmp_path: Path) -> None:
    assert store.put_bytes("empty", b"") == ObjectInfo("empty", 0, sha(b""))
    assert store.get_bytes("empty") == b""
    assert store.get_file("empty", tmp_path / "e") == ObjectInfo("empty", 0, sha(b""))
    assert (tmp_path / "e").read_bytes() == b""


def test_file_round_trip_creates_parents(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "tune.mid"
    data = os.urandom(300_000)
    src.write_bytes(data)
    info = store.put_file("batches/b1/tunes/t1.mid", src)
    assert info == ObjectInfo("batches/b1/tunes/t1.mid", len(data), sha(data))
    assert store.info("batches/b1/tunes/t1.mid") == info

    dest = tmp_path / "out" / "deep" / "er" / "t1.mid"
    assert store.get_file("batches/b1/tunes/t1.mid", dest) == info
    assert dest.read_bytes() == data
    assert leftovers(tmp_path / "out") == []


def test_get_file_replaces_existing_dest_atomically(store: ArtifactStore, tmp_path: Path) -> None:
    store.put_bytes("m/new.bin", b"new content")
    dest_dir = tmp_path / "cache"
    dest_dir.mkdir()
    dest = dest_dir / "model.bin"
    dest.write_bytes(b"old content that is longer than the new one")
    inode_before = dest.stat().st_ino

    store.get_file("m/new.bin", dest)

    assert dest.read_bytes() == b"new content"
    assert dest.stat().st_ino != inode_before  # a new file renamed into place, not rewritten
    assert sorted(p.name for p in dest_dir.iterdir()) == ["model.bin"]


def test_get_file_of_missing_key_leaves_dest_alone(store: ArtifactStore, tmp_path: Path) -> None:
    dest = tmp_path / "keep.bin"
    dest.write_bytes(b"keep me")
    with pytest.raises(NotFoundError, match="nope/missing"):
        store.get_file("nope/missing", dest)
    assert dest.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "store") == ["keep.bin"]


def test_missing_key(store: ArtifactStore) -> None:
    with pytest.raises(NotFoundError, match="no/such/key"):
        store.get_bytes("no/such/key")
    assert store.info("no/such/key") is None
    assert not store.exists("no/such/key")
    store.delete("no/such/key")  # no error
    with pytest.raises(NotFoundError, match="no/such/key"):
        store.url("no/such/key")


def test_a_folder_is_not_an_object(store: ArtifactStore) -> None:
    store.put_bytes("dir/child", b"x")
    assert store.info("dir") is None
    assert not store.exists("dir")
    with pytest.raises(NotFoundError):
        store.get_bytes("dir")
    store.delete("dir")  # no error, and the child survives
    assert store.get_bytes("dir/child") == b"x"


def test_delete(store: ArtifactStore) -> None:
    store.put_bytes("runs/r1/run.json", b"{}")
    store.put_bytes("runs/r1/checkpoint.keras", b"weights")
    store.delete("runs/r1/run.json")
    assert not store.exists("runs/r1/run.json")
    assert list(store.list("runs/")) == ["runs/r1/checkpoint.keras"]
    store.delete("runs/r1/run.json")  # twice: still no error


# ------------------------------------------------------------------------------------------------
# listing
# ------------------------------------------------------------------------------------------------

LIST_KEYS = [
    "b/2",
    "a/sub/deep.txt",
    "a/10",
    "a/2",
    "a/1",
    "a-b/x",
    "a.b",
    "ab/c",
    "A/upper",
    "a0",
]


def test_list_is_sorted_and_prefix_filtered(store: ArtifactStore) -> None:
    for key in LIST_KEYS:
        store.put_bytes(key, key.encode())
    assert list(store.list("")) == sorted(LIST_KEYS)
    assert list(store.list("a/")) == ["a/1", "a/10", "a/2", "a/sub/deep.txt"]
    # A prefix is a plain string prefix, as in S3: "a" also matches "a-b/x", "a.b", "ab/c", "a0".
    assert list(store.list("a")) == sorted(k for k in LIST_KEYS if k.startswith("a"))
    assert list(store.list("a/sub/")) == ["a/sub/deep.txt"]
    assert list(store.list("a/sub")) == ["a/sub/deep.txt"]
    assert list(store.list("a/1")) == ["a/1", "a/10"]
    assert list(store.list("b")) == ["b/2"]
    assert list(store.list("zzz/")) == []
    assert list(store.list("A/")) == ["A/upper"]  # case-sensitive


def test_list_of_empty_store(store: ArtifactStore) -> None:
    assert list(store.list("")) == []
    assert list(store.list("models/")) == []


def test_list_is_lazy_iterator(store: ArtifactStore) -> None:
    store.put_bytes("it/1", b"1")
    listing = store.list("it/")
    assert iter(listing) is listing
    assert next(listing) == "it/1"


# ------------------------------------------------------------------------------------------------
# urls and local paths
# ------------------------------------------------------------------------------------------------


def test_url_downloads_the_object(store: ArtifactStore) -> None:
    data = os.urandom(10_000)
    store.put_bytes("batches/b1/tunes/t1.wav", data)
    url = store.url("batches/b1/tunes/t1.wav", expires_s=600)
    if isinstance(store, S3Store):
        assert url.startswith(store.endpoint_url or "")
        assert "X-Amz-Signature=" in url and "X-Amz-Expires=600" in url
    else:
        assert url.startswith("file://")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == data


@pytest.mark.parametrize("expires_s", [0, -1, 7 * 24 * 3600 + 1])
def test_url_lifetime_is_checked(store: ArtifactStore, expires_s: int) -> None:
    store.put_bytes("k", b"x")
    with pytest.raises(InvalidInputError, match="lifetime"):
        store.url("k", expires_s=expires_s)


def test_local_path(store: ArtifactStore) -> None:
    store.put_bytes("models/m1.keras", b"weights")
    path = store.local_path("models/m1.keras")
    if isinstance(store, S3Store):
        assert path is None
    else:
        assert path is not None and path.is_absolute()
        assert path.read_bytes() == b"weights"


# ------------------------------------------------------------------------------------------------
# big files: streaming, multipart, bounded memory
# ------------------------------------------------------------------------------------------------


def test_big_file_streams_with_bounded_memory(store: ArtifactStore, tmp_path: Path) -> None:
    size = 20 * MiB
    src = tmp_path / "big.wav"
    expected = write_random_file(src, size)
    store.put_bytes("warmup", b"x")  # create the client (model loading allocates) before tracing

    tracemalloc.start()
    try:
        info = store.put_file("batches/b1/tunes/big.wav", src)
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        got = store.get_file("batches/b1/tunes/big.wav", tmp_path / "back" / "big.wav")
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert info == ObjectInfo("batches/b1/tunes/big.wav", size, expected)
    assert got == info
    assert store.info("batches/b1/tunes/big.wav") == info
    assert put_peak < 8 * MiB, f"put_file held {put_peak / MiB:.1f} MiB of a 20 MiB file"
    assert get_peak < 8 * MiB, f"get_file held {get_peak / MiB:.1f} MiB of a 20 MiB file"
    if isinstance(store, S3Store):
        raw = srv.s3_client(store.endpoint_url or "")
        head = raw.head_object(Bucket=store.bucket, Key=S3_PREFIX + "batches/b1/tunes/big.wav")
        assert "-" in head["ETag"], "a 20 MiB upload must be multipart"
        assert head["Metadata"]["sha256"] == expected


# ------------------------------------------------------------------------------------------------
# make_store
# ------------------------------------------------------------------------------------------------


def test_make_store_local(tmp_path: Path) -> None:
    store = make_store(Settings(data_dir=tmp_path / "data", s3_bucket=None))
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path / "data"
    assert str(tmp_path / "data") in store.description


def test_make_store_s3(s3_bucket: tuple[str, str]) -> None:
    endpoint, bucket = s3_bucket
    settings = Settings(
        s3_bucket=bucket,
        s3_endpoint_url=endpoint,
        s3_access_key_id=srv.FAKE_ACCESS_KEY_ID,
        s3_secret_access_key=srv.FAKE_SECRET_ACCESS_KEY,  # type: ignore[arg-type]
        s3_prefix="/team-b/",
    )
    store = make_store(settings)
    assert isinstance(store, S3Store)
    assert store.description == f"s3://{bucket}/team-b/ at {endpoint}"
    assert srv.FAKE_SECRET_ACCESS_KEY not in store.description + repr(store)
    store.put_bytes("k", b"v")
    raw = srv.s3_client(endpoint)
    assert raw.get_object(Bucket=bucket, Key="team-b/k")["Body"].read() == b"v"


# ------------------------------------------------------------------------------------------------
# LocalStore specifics
# ------------------------------------------------------------------------------------------------


def test_local_temp_files_are_never_listed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("a/real", b"1")
    (tmp_path / "a" / ".tmp-abc.part").write_bytes(b"half a file")
    (tmp_path / "a" / "not a key").write_bytes(b"foreign")
    assert list(store.list("")) == ["a/real"]


def test_local_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("m/ckpt", b"previous")
    src = tmp_path / "src"
    src.write_bytes(b"y" * (3 * MiB))

    def dying_reader(f: Any) -> Iterator[bytes]:
        yield f.read(MiB)
        raise KeyboardInterrupt  # a kill in the middle of the copy

    monkeypatch.setattr(local_module, "read_chunks", dying_reader)
    with pytest.raises(KeyboardInterrupt):
        store.put_file("m/ckpt", src)
    assert store.get_bytes("m/ckpt") == b"previous"
    with pytest.raises(KeyboardInterrupt):
        store.put_file("m/other", src)
    assert not store.exists("m/other")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        (errno.ENOSPC, StorageFullError, "no space left"),
        (errno.EACCES, ConfigError, "not writable.*TUNEBATCH_DATA_DIR"),
        (errno.EROFS, ConfigError, "not writable.*TUNEBATCH_DATA_DIR"),
    ],
)
def test_local_write_errors_are_translated(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    error: type[Exception],
    message: str,
) -> None:
    def failing_mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        raise OSError(code, os.strerror(code))

    store = LocalStore(tmp_path)
    monkeypatch.setattr(tempfile, "mkstemp", failing_mkstemp)
    with pytest.raises(error, match=message):
        store.put_bytes("k", b"v")


def test_local_root_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    store = LocalStore(blocker / "sub")  # a root below a regular file can never be created
    with pytest.raises(PermanentError):
        store.put_bytes("k", b"v")


def test_local_info_sees_changes_made_behind_its_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("k", b"one")
    assert store.info("k") == ObjectInfo("k", 3, sha(b"one"))
    (tmp_path / "k").write_bytes(b"two!")  # rewritten in place, not through the store
    assert store.info("k") == ObjectInfo("k", 4, sha(b"two!"))


def test_local_relative_root_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = LocalStore(Path("artifacts"))
    assert store.root == tmp_path / "artifacts"
    monkeypatch.chdir("/")
    store.put_bytes("k", b"v")
    assert (tmp_path / "artifacts" / "k").read_bytes() == b"v"


# ------------------------------------------------------------------------------------------------
# S3Store specifics: failures of the server, the bucket and the content
# ------------------------------------------------------------------------------------------------


def test_s3_keys_live_under_the_prefix(s3_store: S3Store) -> None:
    s3_store.put_bytes("batches/b1/manifest.json", b"{}")
    raw = srv.s3_client(s3_store.endpoint_url or "")
    keys = [o["Key"] for o in raw.list_objects_v2(Bucket=s3_store.bucket)["Contents"]]
    assert keys == [S3_PREFIX + "batches/b1/manifest.json"]
    head = raw.head_object(Bucket=s3_store.bucket, Key=keys[0])
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"sha256": sha(b"{}")}


def test_s3_foreign_objects(s3_store: S3Store, tmp_path: Path) -> None:
    raw = srv.s3_client(s3_store.endpoint_url or "")
    raw.put_object(Bucket=s3_store.bucket, Key=S3_PREFIX + "x/uploaded by hand.txt", Body=b"a")
    raw.put_object(Bucket=s3_store.bucket, Key=S3_PREFIX + "x/plain", Body=b"plain")
    raw.put_object(Bucket=s3_store.bucket, Key="outside-prefix", Body=b"b")
    assert list(s3_store.list("")) == ["x/plain"]  # invalid keys and other prefixes are skipped
    # No sha256 metadata: info says so with "", downloads are not verified.
    assert s3_store.info("x/plain") == ObjectInfo("x/plain", 5, "")
    assert s3_store.get_file("x/plain", tmp_path / "p") == ObjectInfo("x/plain", 5, sha(b"plain"))


def test_s3_tampered_object_is_refused(s3_store: S3Store, tmp_path: Path) -> None:
    good = s3_store.put_bytes("models/m1.keras", b"the registered weights")
    raw = srv.s3_client(s3_store.endpoint_url or "")
    raw.put_object(
        Bucket=s3_store.bucket,
        Key=S3_PREFIX + "models/m1.keras",
        Body=b"someone else's weights",
        Metadata={"sha256": good.sha256},
    )
    dest_dir = tmp_path / "cache"
    with pytest.raises(IntegrityError, match=r"models/m1\.keras"):
        s3_store.get_file("models/m1.keras", dest_dir / "m1.keras")
    assert not (dest_dir / "m1.keras").exists()
    assert list(dest_dir.iterdir()) == []  # the temp file is gone too
    with pytest.raises(IntegrityError, match=r"models/m1\.keras"):
        s3_store.get_bytes("models/m1.keras")


def test_s3_missing_bucket_is_a_permanent_config_error(
    s3_bucket: tuple[str, str], tmp_path: Path
) -> None:
    endpoint, _ = s3_bucket
    store = make_s3_store(endpoint, "no-such-bucket-here")
    src = tmp_path / "src"
    src.write_bytes(b"x")
    calls: list[Callable[[], object]] = [
        lambda: store.put_bytes("k", b"x"),
        lambda: store.put_file("k", src),
        lambda: store.get_bytes("k"),
        lambda: store.get_file("k", tmp_path / "dest"),
        lambda: store.info("k"),
        lambda: store.exists("k"),
        lambda: list(store.list("")),
        lambda: store.delete("k"),
        lambda: store.url("k"),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match="no-such-bucket-here") as excinfo:
            call()
        assert isinstance(excinfo.value, PermanentError)
    assert not (tmp_path / "dest").exists()


def test_s3_bad_bucket_name() -> None:
    with pytest.raises(ConfigError, match="bucket name"):
        S3Store("Not_A_Bucket")


def test_s3_stopped_server_is_a_transient_storage_error(tmp_path: Path) -> None:
    with srv.s3_server(tmp_path) as server:
        srv.create_bucket(server.endpoint_url, "bkt")
        store = make_s3_store(server.endpoint_url, "bkt")
        store.put_bytes("k", b"v")
        server.stop()

        # The store's own client config (5 attempts, backoff): still fails within seconds.
        started = time.monotonic()
        with pytest.raises(StorageError, match="is the bucket server up") as excinfo:
            store.get_bytes("k")
        elapsed = time.monotonic() - started
        assert server.endpoint_url in str(excinfo.value)
        assert elapsed < 20, f"took {elapsed:.1f}s to give up"

        # Every operation maps the failure the same way (one attempt each, to keep this fast).
        quick = S3Store(
            "bkt", endpoint_url=server.endpoint_url, client=srv.s3_client(server.endpoint_url)
        )
        src = tmp_path / "src"
        src.write_bytes(b"x")
        calls: list[Callable[[], object]] = [
            lambda: quick.put_bytes("k", b"x"),
            lambda: quick.put_file("k", src),
            lambda: quick.get_bytes("k"),
            lambda: quick.get_file("k", tmp_path / "dest"),
            lambda: quick.info("k"),
            lambda: list(quick.list("")),
            lambda: quick.delete("k"),
            lambda: quick.url("k"),
        ]
        for call in calls:
            with pytest.raises(StorageError, match="is the bucket server up"):
                call()
        assert not (tmp_path / "dest").exists()


def test_s3_store_works_again_after_the_server_returns(tmp_path: Path) -> None:
    with srv.s3_server(tmp_path) as server:
        store = make_s3_store(server.endpoint_url, "bkt")
        srv.create_bucket(server.endpoint_url, "bkt")
        store.put_bytes("k", b"v")
        server.restart()  # moto forgets everything; the same client reconnects
        srv.create_bucket(server.endpoint_url, "bkt")
        assert store.info("k") is None
        store.put_bytes("k", b"again")
        assert store.get_bytes("k") == b"again"


class _FailingClient:
    """Stands in for a boto3 client whose every call raises `exc` (as botocore would)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.exc

        return fail


def _client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    exc: Exception = ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} message"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetObject",
    )
    return exc


def _botocore_error(name: str) -> Exception:
    import botocore.exceptions as bx

    errors: dict[str, Callable[[], Exception]] = {
        "ReadTimeoutError": lambda: bx.ReadTimeoutError(endpoint_url="http://s3.example:9000"),
        "NoCredentialsError": lambda: bx.NoCredentialsError(),
    }
    return errors[name]()


@pytest.mark.parametrize(
    ("make_exc", "error", "message"),
    [
        (lambda: _client_error("AccessDenied", 403), ConfigError, "refused.*ACCESS_KEY"),
        (lambda: _client_error("InvalidAccessKeyId", 403), ConfigError, "refused"),
        (lambda: _client_error("NoSuchBucket", 404), ConfigError, "does not exist"),
        (lambda: _client_error("NoSuchKey", 404), NotFoundError, "no artifact 'k'"),
        (lambda: _client_error("SlowDown", 503), StorageError, "retry later"),
        (lambda: _client_error("InternalError", 500), StorageError, "retry later"),
        (lambda: _client_error("XMinioStorageFull", 507), StorageFullError, "out of space"),
        (lambda: _client_error("InvalidArgument", 400), PermanentError, "rejected"),
        (lambda: _botocore_error("ReadTimeoutError"), StorageError, "is the bucket server up"),
        (lambda: _botocore_error("NoCredentialsError"), ConfigError, "credentials"),
    ],
)
def test_s3_error_translation(
    make_exc: Callable[[], Exception], error: type[Exception], message: str, tmp_path: Path
) -> None:
    exc = make_exc()
    store = S3Store("bkt", endpoint_url="http://s3.example:9000", client=_FailingClient(exc))
    with pytest.raises(error, match=message) as excinfo:
        store.get_bytes("k")
    assert excinfo.value.__cause__ is exc  # the original stays attached for debugging
    if error is PermanentError:
        assert not isinstance(excinfo.value, ConfigError | StorageError)
    with pytest.raises(error, match=message):
        store.get_file("k", tmp_path / "dest")
    assert list(tmp_path.iterdir()) == []


class _ChangingClient:
    """A real client whose upload_file lets the source file change right after the upload."""

    def __init__(self, inner: Any, src: Path) -> None:
        self.inner = inner
        self.src = src

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upload_file(self, *args: Any, **kwargs: Any) -> None:
        self.inner.upload_file(*args, **kwargs)
        self.src.write_bytes(b"rewritten by someone else while uploading")


def test_s3_put_file_refuses_a_file_that_changed(
    s3_bucket: tuple[str, str], tmp_path: Path
) -> None:
    endpoint, bucket = s3_bucket
    src = tmp_path / "ckpt.keras"
    src.write_bytes(b"epoch 3 weights")
    store = S3Store(
        bucket, endpoint_url=endpoint, client=_ChangingClient(srv.s3_client(endpoint), src)
    )
    with pytest.raises(StorageError, match="changed while it was uploaded"):
        store.put_file("runs/r1/checkpoint.keras", src)
    assert store.info("runs/r1/checkpoint.keras") is None  # no object with a wrong hash is left


def test_s3_client_is_rebuilt_after_fork(
    s3_store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = s3_store._client
    assert s3_store._client is first
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)
    assert s3_store._client is not first
    s3_store.put_bytes("k", b"still works")
    assert s3_store.get_bytes("k") == b"still works"
