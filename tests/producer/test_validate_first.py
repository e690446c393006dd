"""Validate first, write after: a refused submit-batch leaves no record and no object behind,
in embedded mode (the CLI, as a user runs it) and in distributed mode (real Redis)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import InvalidInputError
from common.schemas import BatchSpec
from common.settings import Settings
from common.state.redis import RedisRecords
from producer.client import Client
from tests import servers as srv
from tests.model_fixtures import TinyEnv
from tests.producer.test_distributed_cli import fake_model
from tests.producer_cli import embedded_data_dir, run

#: (primer, max-chars, what the one-line error must say): each one of the issue's refusals.
REFUSED = [
    ("X:1\nT:" + "a" * 200, "100", "leaves no room in --max-chars 100"),
    ("X:1\n" * 20_000, "100000", "holds 20000 X: lines"),
    ('X:1\nI:bgcolor red"/><script>alert(1)</script>\n', "1500", "directive 'bgcolor'"),
    ("X:1\n%%MIDI ptstress /etc/passwd\n", "1500", "directive 'MIDI ptstress'"),
    ("X:1\nT:t\n[I:format /etc/passwd]", "1500", "directive 'format'"),
    ("X:1\n%%abcm2ps #\n", "1500", "directive 'abcm2ps'"),
    ("X:1\nT:\x07bell\n", "1500", "non-printable character U+0007"),
]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_env: TinyEnv) -> Iterator[Path]:
    """Embedded mode with a copy of the session's tiny model in a fresh data dir."""
    with embedded_data_dir(tmp_path / "data", monkeypatch, tiny_env.store) as data:
        yield data


def _everything(data: Path) -> set[str]:
    return {str(p.relative_to(data)) for p in data.rglob("*")}


@pytest.mark.parametrize(("primer", "max_chars", "message"), REFUSED)
def test_a_refused_embedded_submit_leaves_nothing(
    env: Path, primer: str, max_chars: str, message: str
) -> None:
    before = _everything(env)
    code, _, err = run(
        "submit-batch", "--count", "3", "--primer", primer, "--max-chars", max_chars, "--any",
        "--formats", "abc,mid",
    )  # fmt: skip
    assert code != 0 and "Traceback" not in err
    assert err.strip().startswith("error:") and message in " ".join(err.split()), err
    assert _everything(env) == before  # no batch, no records folder, no tune file
    code, out, _ = run("list", "--json")
    assert code == 0 and out.strip() == "[]"


def test_a_good_primer_still_makes_a_batch(env: Path) -> None:
    code, out, err = run(
        "submit-batch", "--count", "2", "--primer", "X:1\nM:6/8\n", "--any", "--formats", "abc",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert sum(json.loads(out)["counts"].values()) == 2


@pytest.mark.parametrize(("primer", "max_chars", "message"), REFUSED[:4])
def test_a_refused_distributed_submit_writes_no_record(
    redis_server: srv.RedisServer, tmp_path: Path, primer: str, max_chars: str, message: str
) -> None:
    settings = Settings(broker_url=redis_server.url, data_dir=tmp_path / "data", chunk_size=10)
    model_id = fake_model(settings.data_dir)
    before = _everything(settings.data_dir)
    spec = BatchSpec(count=30, model_id=model_id, primer=primer, max_chars=int(max_chars))
    with pytest.raises(InvalidInputError, match=message.replace("'", ".").replace("(", ".")):
        Client(settings).submit_batch(spec)
    records = RedisRecords.from_url(redis_server.url)
    assert records.list_batches() == []
    assert records.r.keys("tunebatch:*") == []
    assert records.r.llen("gpu") == 0
    assert _everything(settings.data_dir) == before


def test_a_train_request_with_an_unknown_preset_writes_nothing(
    redis_server: srv.RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preset is checked in the producer (which has no Keras to look the recipe up) before
    a run record exists, in distributed mode as in embedded mode."""
    data = tmp_path / "data"
    with embedded_data_dir(data, monkeypatch):
        monkeypatch.setenv("TUNEBATCH_BROKER_URL", redis_server.url)
        code, _, err = run("train", "--corpus", "oneills", "--preset", "huge")
    assert code != 0
    assert "unknown preset 'huge'" in err and "small" in err, err
    records = RedisRecords.from_url(redis_server.url)
    assert records.r.keys("tunebatch:*") == [] and records.r.llen("gpu") == 0
    assert not data.exists() or _everything(data) == set()


def test_the_preset_names_are_the_recipes() -> None:
    from common.presets import PRESETS
    from common.schemas import TrainSpec

    assert all(TrainSpec(corpus="c", preset=name).preset == name for name in PRESETS)
