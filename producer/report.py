"""``producer report``: the quality figures of a batch or of an ABC file.

A batch's figures come from its manifest when it has them (written when the batch finished), or
are computed now from its records and tune files. A file's tunes are checked here: abc2midi,
the rhythm check, and with ``--corpus`` the copy check against that imported corpus. The
definitions are those of `common.quality.figures`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from producer import views
from producer.options import JsonOpt, handles_errors

if TYPE_CHECKING:
    from common.quality.figures import TuneQuality
    from common.quality.musicality import TuneFeatures
    from common.schemas import MusicalityReport, QualityReport


#: One row of the quality table: figure, this batch's (or file's) value, held-out human tunes',
#: the whole corpus' ("" where no comparison applies).
Row = tuple[str, str, str, str]


def report_rows(report: QualityReport) -> list[Row]:
    """The quality table's rows, in the order people read them."""
    from common.quality.figures import key_spread

    pct = views.fmt_float

    def share(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f} %"

    plain = [
        ("tunes", str(report.tunes)),
        ("abc2midi valid", share(report.valid)),
        ("rhythm ok (every bar fits the meter)", share(report.rhythm_ok)),
        ("bar regularity (bars of the meter's length)", share(report.bar_regularity)),
        ("two-part form (8/16-bar parts)", share(report.two_part)),
        ("length: mean bars / chars", f"{report.mean_bars:.1f} / {report.mean_chars:.0f}"),
        ("near-copies of a training tune", share(report.near_copy)),
        ("mean similarity to the nearest training tune", pct(report.mean_similarity)),
        ("diversity (distinct n-gram share over pairs)", pct(report.diversity)),
        ("keys (most common first)", key_spread(report.keys)),
    ]
    if report.tries is not None:
        plain += [
            ("tries (gate included)", str(report.tries)),
            ("raw valid (share of tries)", share(report.raw_valid)),
            ("raw rhythm ok (share of tries)", share(report.raw_rhythm_ok)),
        ]
    rows: list[Row] = [(figure, value, "", "") for figure, value in plain]
    if report.musicality is not None:
        rows += musicality_rows(report.musicality)
    return rows


def musicality_rows(report: MusicalityReport) -> list[Row]:
    """The musicality figures, each beside held-out human tunes' and the whole corpus's."""
    from common.quality.musicality import FAMILIES, SHARES, SUMMARY_LABELS

    if report.unavailable is not None or report.overall is None:
        return [("musicality", report.unavailable or "no tunes to score", "", "")]
    human = report.baselines.get("human", {})
    corpus = report.baselines.get("corpus", {})

    def value(key: str, figures: dict[str, float | None]) -> str:
        number = figures.get(key)
        if number is None:
            return "-"
        if key in SHARES:
            return f"{100 * number:.1f} %"
        return f"{number:.2f}" if abs(number) < 10 else f"{number:.1f}"

    scored: dict[str, float | None] = {"overall": report.overall, **report.families}
    rows: list[Row] = [
        (
            f"musicality: overlap with {report.reference_tunes} held-out {report.reference} "
            "tunes (1 = like them), overall",
            value("overall", scored),
            value("overall", human),
            "",
        )
    ]
    rows += [
        (f"  {family}", value(family, scored), value(family, human), "") for family in FAMILIES
    ]
    rows += [
        (f"  {label}", value(key, report.figures), value(key, human), value(key, corpus))
        for key, label in SUMMARY_LABELS.items()
    ]
    return rows


def batch_report(batch_id: str) -> QualityReport:
    """The batch's QualityReport: its manifest's, or computed now from its records and files."""
    from common.errors import NotFoundError
    from common.jobs.batches import manifest_key
    from common.jobs.finalize import batch_quality
    from common.schemas import Manifest, check_batch_id

    from producer.options import job_context, settings

    ctx = job_context()
    check_batch_id(batch_id)
    key = manifest_key(batch_id)
    if ctx.store.exists(key):
        manifest = Manifest.model_validate_json(ctx.store.get_bytes(key))
        if manifest.quality is not None:
            return manifest.quality
    batch = ctx.records.get_batch(batch_id)
    report = batch_quality(
        ctx.store,
        batch_id,
        ctx.records.tunes(batch_id),
        batch.spec.near_copy_threshold,
        reference=settings().musicality_reference,
    )
    if report is None:
        raise NotFoundError(f"batch {batch_id} has no generated tunes yet; report it later")
    return report


def file_report(
    path: Path, corpus: str | None, check: bool
) -> tuple[QualityReport, list[TuneQuality], list[str], list[TuneFeatures]]:
    """(QualityReport, per-tune figures, titles, per-tune musicality features) of every tune in
    an ABC file."""
    import os

    from common.abc import notation as abc_notation
    from common.abc.corpus import load_corpus, read_abc_file
    from common.errors import InvalidInputError
    from common.quality.figures import assess_texts, summarise
    from common.quality.musicality import tune_features
    from common.quality.reference import musicality
    from common.quality.similarity import MelodyIndex
    from common.render import pipeline as render

    from producer.options import settings, store

    tunes = list(abc_notation.split_tunes(read_abc_file(path)))
    if not tunes:
        raise InvalidInputError(f"{path} holds no tunes (a tune starts with an X: line)")
    s = settings()

    def abc2midi(tune: str) -> tuple[bool, list[str]]:
        result = render.check_abc(tune, s)
        return result.ok, result.errors

    index = None
    if corpus is not None:
        index = MelodyIndex.from_tunes(
            abc_notation.split_tunes(load_corpus(store(), corpus).train_text)
        )
    assessed = assess_texts(
        tunes, checker=abc2midi if check else None, index=index, workers=os.cpu_count() or 1
    )
    titles = [abc_notation.header_fields(t).get("T", "") for t in tunes]
    report = summarise(assessed)
    music = [tune_features(t) for t in tunes]
    if s.musicality_reference:
        report.musicality = musicality(store(), s.musicality_reference, music)
    return report, assessed, titles, music


@handles_errors
def report_cli(
    batch: Annotated[str | None, typer.Argument(help="Batch id (or give --file).")] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", exists=True, dir_okay=False, help="An .abc file to report on."),
    ] = None,
    corpus: Annotated[
        str | None,
        typer.Option(help="With --file: copy-check against this imported corpus's train tunes."),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="With --file: run abc2midi on each tune.")
    ] = True,
    tunes: Annotated[bool, typer.Option("--tunes", help="One row per tune.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Quality of a batch or a file: validity, rhythm, form, copies, diversity, musicality.

    Musicality is measured against held-out human tunes (TUNEBATCH_MUSICALITY_REFERENCE)."""
    from common.errors import InvalidInputError

    if (batch is None) == (file is None):
        raise InvalidInputError("give a batch id or --file F.abc (one of the two)")
    per_tune: list[TuneQuality] = []
    titles: list[str] = []
    music: list[TuneFeatures] = []
    if file is not None:
        report, per_tune, titles, music = file_report(file, corpus, check)
        name = str(file)
    else:
        assert batch is not None
        report, name = batch_report(batch), batch
    rows = [_tune_row(*row) for row in zip(per_tune, titles, music, strict=True)]
    if batch is not None and (tunes or as_json):
        rows = batch_tune_rows(batch)
    if as_json:
        data: dict[str, Any] = {"source": name, **report.model_dump(mode="json")}
        if rows:
            data["per_tune"] = rows
        views.print_json(data)
        return
    views.table(f"Quality of {name}", ["figure", "value", "human", "corpus"], report_rows(report))
    if tunes and rows:
        columns = [
            "title",
            "key",
            "valid",
            "rhythm_ok",
            "bars",
            "wrong_bars",
            "two_part",
            "nearest",
        ]
        views.table("Tunes", columns, [[r[c] for c in columns] for r in rows])


def batch_tune_rows(batch_id: str) -> list[dict[str, Any]]:
    """One row per tune of a batch from its records (the manifest's once it is finished): the
    figures the gate recorded, as `_tune_row` gives them for a file."""
    from common.jobs.batches import manifest_key
    from common.schemas import Manifest

    from producer.options import job_context

    ctx = job_context()
    key = manifest_key(batch_id)
    if ctx.store.exists(key):
        records = Manifest.model_validate_json(ctx.store.get_bytes(key)).tunes
    else:
        records = ctx.records.tunes(batch_id)
    return [
        {
            "title": t.title or t.tune_id,
            "key": t.key,
            "valid": t.valid,
            "rhythm_ok": t.rhythm_ok,
            "bars": t.bars,
            "wrong_bars": t.wrong_bars,
            "two_part": t.two_part,
            "nearest": t.nearest_tune,
        }
        for t in records
    ]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _tune_row(tune: TuneQuality, title: str, music: TuneFeatures) -> dict[str, Any]:
    tonic_end = music.scalar("final_tonic")
    return {
        "title": title,
        "key": tune.key,
        "valid": tune.valid,
        "rhythm_ok": tune.rhythm_ok,
        "bars": tune.bars,
        "wrong_bars": tune.wrong_bars,
        "two_part": tune.two_part,
        "chars": tune.chars,
        "nearest": (
            None if tune.nearest_tune is None else f"{tune.nearest_tune} ({tune.similarity:.2f})"
        ),
        "similarity": tune.similarity,
        "reasons": tune.reasons[:5],
        "tonic_end": None if tonic_end is None else tonic_end == 1.0,
        "repeated_bars": _rounded(music.scalar("repeated_bars")),
        "motif_reuse": _rounded(music.scalar("motif_reuse")),
    }


def register(app: typer.Typer) -> None:
    app.command("report")(report_cli)
