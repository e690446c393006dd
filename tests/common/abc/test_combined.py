"""The combined corpus: dialect normalisation, sources kept, rhythm filter, counts."""

from __future__ import annotations

import json
from pathlib import Path

from common.abc.combined import import_all, normalise_dialect, with_source
from common.abc.corpus import load_corpus
from common.abc.rhythm import check_rhythm
from common.render import pipeline as render
from common.settings import Settings
from common.store.local import LocalStore

AIRDS = """X:0004
T:I'll Touzle your Kurchy.
M:6/8
L:1/8
Q:3/8=120
I: :: ::
I:linebreak $
K:E Minor
B   |E>GE GEG|B>AB e2f|g>fe dgB|A>GA BG
E   |E>GE GEG|B>AB e2f|g>fe dc``B|AGF  E2:|"""

RYANS = """X:1
T:7th Regiment -- Reel
M:2/4
L:1/16
K:A
vA2(Ac) "4"eAc"0"e | ace"1"a "3"Tc'2("2"b"1"a) | "Am"faea "SEGUE"ceaf |\\
"_mf"u((3ABc)BA F"4"AEC :|"""


def test_airds_header_dialect_is_normalised_and_abc2midi_accepts_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    tune = normalise_dialect(AIRDS)
    assert "I: :: ::" not in tune and "linebreak" not in tune
    assert "K:Em" in tune and "`" not in tune
    assert normalise_dialect("K:A Mixolydian % hexatonic") == "K:AMix % hexatonic"
    assert normalise_dialect("K:D Major") == "K:D"
    result = render.check_abc(tune, settings)
    assert result.ok, result.errors
    assert check_rhythm(tune).ok


def test_ryans_fingerings_and_words_in_quotes() -> None:
    tune = normalise_dialect(RYANS)
    assert '"4"' not in tune and '"0"' not in tune and '"Am"' in tune
    assert '"^SEGUE"' in tune and '"^mf"' not in tune and '"_mf"((3uABc)' in tune
    assert normalise_dialect('"D.C."A "G/B"B "Da capo"c') == '"^D.C."A "G/B"B "^Da capo"c'
    assert normalise_dialect("(uB>.c) B>c d2 d2 H|] =3Dc =20") == "(uB>c) B>c d2 d2 |] =c  "
    assert with_source("X:1\nT:t\nK:C\nC|", "ryans") == "X:1\nS:ryans\nT:t\nK:C\nC|"


def test_import_all_keeps_sources_counts_and_rhythm_filter(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    record = import_all(
        store, name="small", collections=["nottingham", "miscfolk"], rhythm_only=True,
        source_header=True,
    )  # fmt: skip
    assert set(record.collections) == {"nottingham", "miscfolk"}
    for counts in record.collections.values():
        dropped = sum(counts[k] for k in ("unsafe", "missing_headers", "duplicates", "rhythm"))
        assert counts["kept"] + dropped == counts["found"]
    kept = sum(c["kept"] for c in record.collections.values())
    assert record.train_tunes + record.valid_tunes == kept and record.rhythm_only
    corpus = load_corpus(store, "small")
    sources = json.loads(store.get_bytes("corpora/small/sources.json"))
    assert len(sources["train"]) == record.train_tunes
    assert corpus.train_text.split("\n")[1].startswith("S:")
    first = corpus.train_text.split("\n\n")[0]
    assert check_rhythm(first).ok and f"S:{sources['train'][0]}" in first


def test_files_converted_from_a_dos_code_page_read_as_letters(tmp_path: Path) -> None:
    from common.abc.corpus import read_abc_file

    path = tmp_path / "essen.abc"
    path.write_text("T:Gr\x81\x9ee aus M\x81nchen, sch\x94n\n", encoding="utf-8")
    assert read_abc_file(path) == "T:Grüße aus München, schön\n"
