"""Corpus import from bundled collections and user files into the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.abc.corpus import (
    BUNDLED,
    bundled_files,
    clean_tunes,
    import_corpus,
    list_corpora,
    load_corpus,
    resolve_source,
)
from common.errors import InvalidInputError, NotFoundError
from common.render import pipeline as render
from common.settings import Settings
from common.store.local import LocalStore
from tests.model_fixtures import TINY_CORPUS

GOOD = "X:1\nT:Good\nM:2/4\nL:1/8\nK:D\nDE FA|dc BA|\n"


def test_import_user_file_writes_split_vocab_and_counts(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    record = import_corpus(store, str(TINY_CORPUS), name="tiny")
    assert record.tunes_found == 40
    assert record.train_tunes + record.valid_tunes + record.dropped_duplicates == 40
    assert record.valid_tunes >= 1
    corpus = load_corpus(store, "tiny")
    assert corpus.train_text.count("\nX:") + 1 == record.train_tunes
    assert set(corpus.train_text + corpus.valid_text) == set(corpus.vocab.chars)
    assert "Transcribed by" not in corpus.train_text  # Z: fields are dropped
    assert [r.name for r in list_corpora(store)] == ["tiny"]
    again = import_corpus(LocalStore(tmp_path / "again"), str(TINY_CORPUS), name="tiny")
    assert again.sha256 == record.sha256  # the split is deterministic


def test_drops_unsafe_duplicate_and_headerless_tunes(tmp_path: Path) -> None:
    text = "\n\n".join(
        [
            GOOD,
            GOOD.replace("X:1", "X:7"),  # same music, other number
            "X:2\nT:Sneaky\nM:C\n%%abc-include /etc/passwd\nK:C\nC|\n",
            "X:3\nT:No key\nM:C\nCDE|\n",
            "X:4\nM:3/4\nK:G\nGAB|\n",  # no title: kept, titled
            "X:5\nT:Bin\x01ary\nM:C\nK:C\nC|\n",
        ]
    )
    result = clean_tunes([text])
    assert (result.found, result.duplicates, result.unsafe, result.missing_headers) == (6, 1, 1, 1)
    # The include line is stripped and counted; the tune itself stays, without it.
    assert result.stripped == {"abc-include": 1}
    assert len(result.tunes) == 3 and "T:Untitled" in result.tunes[2]
    assert "T:Sneaky" in result.tunes[1] and "include" not in result.tunes[1]


def test_valid_only_keeps_what_abc2midi_accepts(tmp_path: Path) -> None:
    broken = 'X:9\nT:Broken\nM:4/4\nK:D\nA2 B2 |]] ((( c4 z8 [K:Zz] "unclosed\n'
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "a.abc").write_text(GOOD + "\n" + broken)
    settings = Settings(data_dir=tmp_path)
    record = import_corpus(
        LocalStore(tmp_path / "store"),
        str(folder),
        valid_only=True,
        is_valid=lambda t: render.check_abc(t, settings).ok,
    )
    assert record.name == "mine" and record.dropped_invalid == 1
    assert record.train_tunes + record.valid_tunes == 1


def test_bundled_collections_are_found_without_download() -> None:
    for name in ("oneills", "ryans", "airds"):
        assert name in BUNDLED and bundled_files(name)
    name, files = resolve_source("oneills")
    assert name == "oneills" and len(files) > 30


def test_oneills_overlapping_files_are_deduplicated(tmp_path: Path) -> None:
    record = import_corpus(LocalStore(tmp_path), "oneills")
    assert record.dropped_duplicates == 171  # tune numbers that occur in two files
    assert record.train_tunes + record.valid_tunes == record.tunes_found - 171


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(NotFoundError, match="unknown corpus 'nope'"):
        import_corpus(store, "nope")
    empty = tmp_path / "empty.abc"
    empty.write_text("")
    with pytest.raises(InvalidInputError, match="no usable tunes"):
        import_corpus(store, str(empty))
    with pytest.raises(InvalidInputError, match="not a valid name"):
        import_corpus(store, str(TINY_CORPUS), name="../evil")
    with pytest.raises(NotFoundError, match="producer corpus import oneills"):
        load_corpus(store, "oneills")
    assert list_corpora(store) == []  # nothing half-written
