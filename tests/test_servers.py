"""The test servers themselves: they start, answer, keep Redis data across a crash, stop."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests import servers as srv


def test_free_port_is_bindable() -> None:
    port = srv.free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_redis_fixture_answers(redis_server: srv.RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(redis_server.url)
    assert client.ping()
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("save") == {"save": ""}
    client.close()


def test_redis_restart_keeps_data_through_aof(tmp_path: Path) -> None:
    # appendfsync always: every acknowledged write is on disk before the SIGKILL.
    with srv.redis_server(tmp_path, appendfsync="always") as server:
        client = redis.Redis.from_url(server.url)
        client.set("batch:1", "running")
        client.rpush("queue", "a", "b")
        client.close()
        old_pid = server.proc.pid if server.proc else None

        server.restart()  # SIGKILL + start on the same port and dir

        assert server.proc is not None and server.proc.pid != old_pid
        client = redis.Redis.from_url(server.url)
        assert client.get("batch:1") == b"running"
        assert client.lrange("queue", 0, -1) == [b"a", b"b"]
        client.close()
    assert server.proc is None  # stopped on exit


def test_redis_requirepass(tmp_path: Path) -> None:
    with srv.redis_server(tmp_path, password="s3cret") as server:
        assert server.url == f"redis://:s3cret@127.0.0.1:{server.port}/0"
        anonymous = redis.Redis(host="127.0.0.1", port=server.port, retry=Retry(NoBackoff(), 0))
        with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
            anonymous.set("k", "v")
        anonymous.close()
        client = redis.Redis.from_url(server.url)
        assert client.set("k", "v")
        client.close()


def test_s3_server_answers_and_restarts(tmp_path: Path) -> None:
    with srv.s3_server(tmp_path) as server:
        srv.create_bucket(server.endpoint_url, "probe")
        client = srv.s3_client(server.endpoint_url)
        assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["probe"]
        server.restart()
        with urllib.request.urlopen(server.endpoint_url + "/", timeout=5) as response:
            assert response.status == 200
        assert client.list_buckets()["Buckets"] == []  # moto keeps state in memory only
    assert server.proc is None
