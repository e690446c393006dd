"""``producer corpus list|import``: the bundled collections and the corpora imported so far."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from producer import views
from producer.options import JsonOpt, handles_errors, settings, store

corpus_app = typer.Typer(help="Import and list corpora.", no_args_is_help=True)


@corpus_app.command("list")
@handles_errors
def corpus_list(as_json: JsonOpt = False) -> None:
    """List the bundled collections and the corpora imported so far."""
    from common.abc.corpus import BUNDLED, list_corpora

    imported = list_corpora(store())
    if as_json:
        views.print_json(
            {
                "bundled": {k: v[1] for k, v in BUNDLED.items()},
                "imported": [r.model_dump(mode="json") for r in imported],
            }
        )
        return
    views.table("Bundled collections (music21)", ["name", "description"],
                [(k, v[1]) for k, v in BUNDLED.items()])  # fmt: skip
    views.table(
        "Imported corpora",
        ["name", "train tunes", "held out", "train chars", "vocab", "abc2midi-clean",
         "source"],
        [
            (r.name, r.train_tunes, r.valid_tunes, r.train_chars, r.vocab_size,
             "yes" if r.valid_only else "no", r.source)
            for r in imported
        ],
    )  # fmt: skip


@corpus_app.command("import")
@handles_errors
def corpus_import(
    source: Annotated[
        str,
        typer.Argument(help="Bundled name (oneills, ryans, airds, ...) or a .abc file or folder."),
    ],
    name: Annotated[str | None, typer.Option(help="Corpus name (default from the source).")] = None,
    valid_only: Annotated[
        bool, typer.Option("--valid-only", help="Keep only tunes abc2midi converts cleanly.")
    ] = False,
    rhythm_only: Annotated[
        bool, typer.Option("--rhythm-only", help="'all': keep only tunes whose bars fit the meter.")
    ] = False,
    source_header: Annotated[
        bool, typer.Option("--source-header", help="'all': an S:<collection> line in each tune.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Split, clean, de-duplicate and store a corpus with a train / held-out split.

    `all` imports every bundled collection into one corpus (see common.abc.combined).
    """
    from common.abc.corpus import import_corpus
    from common.render import pipeline as render

    s = settings()
    if source == "all" or rhythm_only or source_header:
        return _import_combined(source, name, valid_only, rhythm_only, source_header, as_json)
    record = import_corpus(
        store(),
        source,
        name=name,
        valid_only=valid_only,
        is_valid=lambda tune: render.check_abc(tune, s).ok,
        workers=(os.cpu_count() or 1) * 2,
    )
    if as_json:
        views.print_json(record)
        return
    views.console.print(
        f"corpus [bold]{record.name}[/]: {record.tunes_found} tunes found in {record.files} "
        f"files; dropped {record.dropped_duplicates} duplicates, {record.dropped_unsafe} unsafe, "
        f"{record.dropped_missing_headers} without M:/K:, {record.dropped_invalid} rejected by "
        f"abc2midi; kept {record.train_tunes} train + {record.valid_tunes} held-out tunes "
        f"({record.train_chars + record.valid_chars:,} chars, {record.vocab_size} symbols)"
    )
    if record.stripped_directives:
        dropped = ", ".join(f"{k} ({n})" for k, n in record.stripped_directives.items())
        views.console.print(f"stripped directives not on the allow-list: {dropped}")


def _import_combined(
    source: str,
    name: str | None,
    valid_only: bool,
    rhythm_only: bool,
    source_header: bool,
    as_json: bool,
) -> None:
    """``corpus import all`` (or one bundled collection with --rhythm-only/--source-header)."""
    from common.abc.combined import import_all
    from common.abc.corpus import BUNDLED
    from common.errors import InvalidInputError
    from common.render import pipeline as render

    if source != "all" and source not in BUNDLED:
        raise InvalidInputError(
            f"--rhythm-only and --source-header work on bundled collections and 'all', not "
            f"{source!r}; import your own files without them"
        )
    s = settings()
    record = import_all(
        store(),
        name=name or source,
        collections=None if source == "all" else [source],
        valid_only=valid_only,
        is_valid=lambda tune: render.check_abc(tune, s).ok,
        rhythm_only=rhythm_only,
        source_header=source_header,
        workers=(os.cpu_count() or 1) * 2,
    )
    if as_json:
        views.print_json(record)
        return
    columns = ["found", "kept", "unsafe", "missing_headers", "duplicates", "invalid", "rhythm"]
    views.table(
        f"corpus {record.name}: kept per collection, dropped per reason",
        ["collection", *columns],
        [(c, *(n.get(k, 0) for k in columns)) for c, n in record.collections.items()],
    )
    views.console.print(
        f"corpus [bold]{record.name}[/]: {record.train_tunes} train + {record.valid_tunes} "
        f"held-out tunes ({record.train_chars + record.valid_chars:,} chars, "
        f"{record.vocab_size} symbols)"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(corpus_app, name="corpus")
