"""A tiny corpus and a tiny trained model, made once per test session on local disk.

Shared by the common/, producer/ and worker/ tests: training even the tiny preset takes seconds,
so it happens once, and tests that change things copy what they need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from common.abc.corpus import import_corpus
from common.schemas import CorpusRecord, ModelRecord, TrainSpec, new_run_id
from common.settings import Settings
from common.store.local import LocalStore

TINY_CORPUS = Path(__file__).parent / "data" / "tiny_corpus.abc"


@dataclass(frozen=True)
class TinyEnv:
    data_dir: Path
    settings: Settings
    store: LocalStore
    corpus: CorpusRecord
    model: ModelRecord


def tiny_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        sample_batch_size=16,
        steps_per_call=8,
        chunk_size=8,
        render_workers=2,
    )


@pytest.fixture(scope="session")
def tiny_env(tmp_path_factory: pytest.TempPathFactory) -> TinyEnv:
    from common.lstm.training import train

    data_dir = tmp_path_factory.mktemp("tiny-data")
    store = LocalStore(data_dir)
    corpus = import_corpus(store, str(TINY_CORPUS), name="tiny")
    model = train(store, TrainSpec(corpus="tiny", preset="tiny", epochs=2), new_run_id())
    return TinyEnv(data_dir, tiny_settings(data_dir), store, corpus, model)
