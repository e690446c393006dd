"""Real servers for tests: redis-server and an S3-compatible HTTP server (moto), on free ports.

Why real servers and not mocks: the distributed mode's failure behaviour (a server killed and
restarted, an AOF reload, a bucket endpoint that stops answering, presigned URLs fetched over
HTTP) only shows against real processes speaking the real protocols. These helpers are plain
context managers, usable from pytest fixtures (tests/conftest.py), benchmarks or a REPL.

Each server runs as a child process, is waited for until it answers (bounded), and is always
stopped on exit. On Linux the child also gets SIGKILL if the test process itself dies, so a
crashed run leaves no servers holding ports.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

__all__ = [
    "FAKE_ACCESS_KEY_ID",
    "FAKE_REGION",
    "FAKE_SECRET_ACCESS_KEY",
    "RedisServer",
    "S3Server",
    "ServerStartError",
    "create_bucket",
    "delete_bucket",
    "free_port",
    "redis_server",
    "s3_client",
    "s3_server",
]

#: Credentials for the test S3 server; passed explicitly so ~/.aws and AWS_* never matter.
FAKE_ACCESS_KEY_ID = "tunebatch-test"
FAKE_SECRET_ACCESS_KEY = "tunebatch-test-secret"  # a fake, for a local test server
FAKE_REGION = "us-east-1"

START_TIMEOUT_S = 20.0


class ServerStartError(RuntimeError):
    """A test server did not come up; the message carries the end of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Looked up once in the parent: the child, between fork and exec, only makes the call.
_PRCTL = _load_prctl() if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL this child when the thread that started it dies.

    Fixtures run in pytest's main thread; a server started from a short-lived thread would die
    with that thread, so start servers from the main thread.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, _SIGKILL)


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if _PRCTL is not None else None,
        )


def _terminate(proc: subprocess.Popen[bytes] | None, *, kill: bool = False) -> None:
    if proc is None or proc.poll() is not None:
        return
    if kill:
        proc.kill()
    else:
        proc.terminate()
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait(timeout=10)


def _log_tail(log_path: Path, limit: int = 2000) -> str:
    try:
        return log_path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def _wait_until(
    ready: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    what: str,
    log_path: Path,
    timeout_s: float = START_TIMEOUT_S,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(
                f"{what} exited with code {proc.returncode} while starting; log:\n"
                + _log_tail(log_path)
            )
        if ready():
            return
        time.sleep(0.05)
    _terminate(proc, kill=True)
    raise ServerStartError(
        f"{what} did not answer within {timeout_s:.0f}s; log:\n" + _log_tail(log_path)
    )


# ------------------------------------------------------------------------------------------------
# Redis
# ------------------------------------------------------------------------------------------------


class RedisServer:
    """A redis-server child process with AOF on, in its own directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        password: str | None = None,
        appendfsync: str = "everysec",
        port: int | None = None,
        binary: str = "redis-server",
    ) -> None:
        self.dir = Path(data_dir)
        self.password = password
        self.appendfsync = appendfsync
        self.port = port if port is not None else free_port()
        self.binary = binary
        self.log_path = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _argv(self) -> list[str]:
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.log_path),
        ]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def _pings(self) -> bool:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=1,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),  # we poll ourselves; no client-side retry loop
        )
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            return False
        finally:
            client.close()

    def start(self) -> None:
        """Start the server (if not running) and wait until it answers PING."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = _spawn(self._argv(), self.log_path)
        _wait_until(self._pings, self.proc, f"redis-server on port {self.port}", self.log_path)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM: redis flushes the AOF), SIGKILL after 10 s."""
        _terminate(self.proc)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        _terminate(self.proc, kill=True)
        self.proc = None

    def restart(self) -> None:
        """SIGKILL, then start again on the same port and directory; the AOF is reloaded."""
        self.kill()
        self.start()


class _Server(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


ServerT = TypeVar("ServerT", bound=_Server)


def _started(make: Callable[[], ServerT], tries: int = 3) -> ServerT:
    """A started server; retried on a new free port, since another process may grab the port
    between `free_port` and the server binding it."""
    for attempt in range(tries):
        server = make()
        try:
            server.start()
            return server
        except ServerStartError:
            server.stop()
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def redis_server(
    tmp_dir: Path, *, password: str | None = None, appendfsync: str = "everysec"
) -> Iterator[RedisServer]:
    """A running redis-server on 127.0.0.1:<free port>, data and log in `tmp_dir`."""
    server = _started(lambda: RedisServer(tmp_dir, password=password, appendfsync=appendfsync))
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------
# S3 (moto in server mode: a real HTTP server speaking the S3 API, state in memory)
# ------------------------------------------------------------------------------------------------


class S3Server:
    """A moto S3 server child process. Its state is in memory: a restart empties it."""

    def __init__(self, log_dir: Path, *, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.log_path = Path(log_dir) / f"moto-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint_url + "/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means it is serving
        except OSError:
            return False

    def start(self) -> None:
        """Start the server (if not running) and wait until it answers HTTP."""
        if self.proc is not None and self.proc.poll() is None:
            return
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = _spawn(argv, self.log_path)
        _wait_until(self._answers, self.proc, f"moto S3 server on port {self.port}", self.log_path)

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None

    def restart(self) -> None:
        """Kill, start again on the same port. Buckets and objects are lost (moto is in memory)."""
        _terminate(self.proc, kill=True)
        self.proc = None
        self.start()


@contextlib.contextmanager
def s3_server(log_dir: Path | None = None) -> Iterator[S3Server]:
    """A running S3-compatible server on 127.0.0.1:<free port>; its log goes to `log_dir`."""
    with contextlib.ExitStack() as stack:
        if log_dir is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="moto-")))
        server = _started(lambda: S3Server(log_dir))
        try:
            yield server
        finally:
            server.stop()


@functools.lru_cache(maxsize=32)
def s3_client(endpoint_url: str) -> Any:
    """A plain boto3 S3 client for the test server (fake credentials, path-style, no retries).

    Cached per endpoint (clients are thread-safe and take ~0.1 s to build); it reconnects by
    itself after a server restart.
    """
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=FAKE_ACCESS_KEY_ID,
        aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
        region_name=FAKE_REGION,
    )
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        config=Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": 1},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def create_bucket(endpoint_url: str, name: str) -> None:
    """Create bucket `name` on the server at `endpoint_url`."""
    s3_client(endpoint_url).create_bucket(Bucket=name)


def delete_bucket(endpoint_url: str, name: str) -> None:
    """Delete bucket `name` and its objects; does nothing if it or the server is gone."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3_client(endpoint_url)
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=name)
    except (BotoCoreError, ClientError):
        pass
