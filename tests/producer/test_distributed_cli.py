"""The producer in distributed mode without workers: light imports, and failures that leave nothing.

The full round trip with workers is in tests/worker/test_distributed.py; these are the fast
checks of what a user sees when Redis is missing or a submission cannot be completed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.errors import BrokerError, InvalidInputError
from common.lstm.registry import register_model
from common.schemas import BatchSpec
from common.settings import Settings
from common.state.redis import RedisRecords
from common.store.local import LocalStore
from producer import cli, options, views
from producer.client import Client
from tests import servers as srv

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def fake_model(data_dir: Path) -> str:
    """A registered model record (the file is never loaded: nothing gets that far here)."""
    path = data_dir / "fake.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really a model")
    record = register_model(
        LocalStore(data_dir),
        path,
        {
            "preset": "tiny", "vocab_size": 3, "embedding_dim": 2, "units": 2,
            "chars": ["\n", "X", ":"], "corpus": "tiny", "corpus_sha256": "0" * 64, "epochs": 1,
            "seq_len": 8, "window_step": 8, "batch_size": 2, "learning_rate": 0.01,
        },
    )  # fmt: skip
    return record.id


@pytest.fixture
def dead_redis_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, int]]:
    port = srv.free_port()
    for key in list(os.environ):
        if key.startswith("TUNEBATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TUNEBATCH_BROKER_URL", f"redis://:s3cret@127.0.0.1:{port}/0")
    monkeypatch.setenv("TUNEBATCH_DATA_DIR", str(tmp_path / "data"))
    options.settings.cache_clear()
    yield tmp_path / "data", port
    options.settings.cache_clear()


def test_producer_imports_no_tensorflow() -> None:
    code = (
        "import sys, producer.cli, producer.client\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_help_lists_the_distributed_commands() -> None:
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for command in ("submit-batch", "status", "url", "dead-letter", "run", "retry", "cancel"):
        assert command in result.stdout


def test_submit_with_redis_down_is_one_line_and_writes_nothing(
    dead_redis_env: tuple[Path, int],
) -> None:
    data_dir, port = dead_redis_env
    model_id = fake_model(data_dir)
    started = time.monotonic()
    result = runner.invoke(cli.app, ["submit-batch", "--count", "1000", "--model", model_id])
    assert time.monotonic() - started < 10
    assert result.exit_code == BrokerError.exit_code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    text = " ".join(result.stderr.split())
    assert lines[0].startswith("error: cannot reach Redis"), result.stderr
    assert f"redis://127.0.0.1:{port}/0" in text and "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr
    assert not (data_dir / "batches").exists()  # nothing of the batch reached the store


def test_read_commands_with_redis_down_are_one_line(dead_redis_env: tuple[Path, int]) -> None:
    for args in (["list"], ["status", "b20260101-000000-abcdef"], ["dead-letter"]):
        result = runner.invoke(cli.app, args)
        assert result.exit_code == BrokerError.exit_code, (args, result.stderr)
        assert result.stderr.startswith("error: cannot reach Redis"), result.stderr


def test_failed_enqueue_withdraws_the_batch(
    redis_server: srv.RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis answers for the records but the broker fails midway: the batch is removed again."""
    from common.dispatch import enqueue as sender

    settings = Settings(broker_url=redis_server.url, data_dir=tmp_path / "data", chunk_size=10)
    model_id = fake_model(settings.data_dir)
    sent: list[tuple[object, ...]] = []

    def flaky_enqueue(name: str, *args: object, task_id: str | None = None, **_: object) -> str:
        if sent:
            raise BrokerError("cannot enqueue (simulated)")
        sent.append(args)
        return "id"

    monkeypatch.setattr(sender, "enqueue", flaky_enqueue)
    client = Client(settings)
    with pytest.raises(BrokerError, match="withdrawn"):
        client.submit_batch(
            BatchSpec(count=30, model_id=model_id, primer="X:", chunk_size=10, valid_only=False)
        )
    rec = RedisRecords.from_url(redis_server.url)
    assert rec.list_batches() == []
    assert rec.r.keys("tunebatch:batch:*") == []


def test_submit_returns_fast_and_queues_one_message_per_chunk(
    redis_server: srv.RedisServer, tmp_path: Path
) -> None:
    settings = Settings(broker_url=redis_server.url, data_dir=tmp_path / "data", chunk_size=256)
    model_id = fake_model(settings.data_dir)
    client = Client(settings)
    started = time.perf_counter()
    batch = client.submit_batch(
        BatchSpec(count=1000, model_id=model_id, chunk_size=256, valid_only=False)
    )
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, elapsed
    rec = client.records
    assert isinstance(rec, RedisRecords)
    assert rec.counts(batch.id)["queued"] == 1000
    assert rec.r.llen("gpu") == 4  # ceil(1000 / 256) chunk messages, nothing per tune


def test_distributed_only_commands_say_so_in_embedded_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TUNEBATCH_BROKER_URL", raising=False)
    monkeypatch.setenv("TUNEBATCH_DATA_DIR", str(tmp_path))
    options.settings.cache_clear()
    try:
        result = runner.invoke(cli.app, ["dead-letter"])
    finally:
        options.settings.cache_clear()
    assert result.exit_code == 2
    assert "TUNEBATCH_BROKER_URL" in result.stderr


def test_worker_without_redis_fails_in_one_line(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "TUNEBATCH_BROKER_URL": f"redis://127.0.0.1:{srv.free_port()}/0",
        "TUNEBATCH_DATA_DIR": str(tmp_path),
        "TUNEBATCH_STARTUP_WAIT_S": "2",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == BrokerError.exit_code, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot reach Redis")
    assert "trying again in" in proc.stderr  # a Redis that is restarting is waited for
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1.5h", 5400)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert views.parse_duration(text) == seconds


def test_parse_duration_rejects_nonsense() -> None:
    with pytest.raises(InvalidInputError, match="not a duration"):
        views.parse_duration("soon")
