"""A batch as a static web page: sheet music, playback, quality figures and downloads per tune.

`build_gallery` writes ``index.html``, ``assets/`` (the page's script and style and the vendored
abcjs) and ``<batch id>/`` (every file of the batch, fetched through `common.jobs.fetch`, so the
same
code serves embedded mode and a bucket). Nothing on the page refers to anything outside that
folder: it opens from ``file://`` with no network, and it keeps working after any presigned URL
would have expired, because it holds no URLs at all.

Rules the page keeps:

- Text from the manifest and the ABC (titles above all) is untrusted. Python writes it into HTML
  only through `html.escape`; the script gets it as one JSON document in a
  ``<script type="application/json">`` block (``<``, ``>`` and ``&`` escaped, so no text can close
  the block) and puts it into the page with ``textContent``, never ``innerHTML``.
- A Content-Security-Policy allows scripts from the page's own files only: no inline script, no
  ``eval``, no other origin. Inline *styles* are allowed because abcjs sets ``style`` attributes
  on the SVG it draws; a style cannot run code.
- With JavaScript off, the page still lists every tune with its facts, its downloads, its audio,
  and the abcm2ps SVG where the batch has one.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from common.abc.notation import header_fields
from common.abc.rhythm import check_rhythm
from common.files import output_dir, own_subdir, write_output_file
from common.jobs.fetch import fetch_batch, read_manifest
from common.schemas import Manifest
from common.store.base import ArtifactStore

log = logging.getLogger(__name__)

#: The page's policy: see the module docstring for why styles are the one inline exception.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; media-src 'self'; connect-src 'none'; font-src 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'"
)

#: Audio formats in the order the page offers them; the browser plays the first it can.
AUDIO_TYPES = {"ogg": "audio/ogg", "mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac"}

#: Quality figures a tune record may carry (the quality checks add some of them). The page shows
#: whichever exist, so a manifest written before a figure existed still builds.
QUALITY_FIELDS = ("valid", "rhythm_ok", "similarity", "nearest_title", "nearest_id", "reasons")

ASSET_FILES = ("gallery.js", "gallery.css")
ABCJS_FILES = ("abcjs-basic-min.js", "abcjs-basic-min.js.LICENSE", "LICENSE.md", "VERSION")


@dataclass(frozen=True)
class Gallery:
    index: Path
    tunes: int
    downloaded: int


def count_bars(abc: str) -> int:
    """Bars of the tune body, as the rhythm check counts them (`common.abc.rhythm`), for tunes
    whose record predates the ``bars`` figure."""
    return check_rhythm(abc).bars


def tune_entry(tune: dict[str, Any], abc: str | None, folder: str) -> dict[str, Any]:
    """What the page knows of one tune: the record's fields plus facts read from its ABC."""
    fields = header_fields(abc) if abc else {}
    render = tune.get("render") or {}
    entry: dict[str, Any] = {
        "id": tune["tune_id"],
        "title": tune.get("title") or fields.get("T") or tune["tune_id"],
        "status": str(tune.get("status", "")),
        "meter": fields.get("M", ""),
        "key": fields.get("K", ""),
        "bars": tune["bars"] if tune.get("bars") is not None else count_bars(abc) if abc else None,
        "seconds": render.get("midi_seconds"),
        "primed_by": tune.get("primed_by"),
        "tries": tune.get("tries"),
        "truncated": tune.get("truncated"),
        "error": tune.get("error"),
        "abc": abc,
        "files": {f["format"]: f"{folder}/{Path(f['key']).name}" for f in tune.get("files", [])},
    }
    # The figures may sit on the record itself or in a nested "quality" object.
    nested = tune.get("quality")
    figures = {**tune, **nested} if isinstance(nested, dict) else tune
    for name in QUALITY_FIELDS:
        if figures.get(name) is not None:
            entry[name] = figures[name]
    return entry


def page_data(manifest: Manifest, abc_of: dict[str, str]) -> dict[str, Any]:
    tunes = [
        tune_entry(t.model_dump(mode="json"), abc_of.get(t.tune_id), manifest.batch_id)
        for t in manifest.tunes
    ]
    for tune in tunes:
        tune["facts"] = facts(tune)  # the script shows the same facts as the static page
    return {
        "batch_id": manifest.batch_id,
        "model": {k: manifest.model.get(k) for k in ("id", "corpus", "preset", "epochs")},
        "temperature": manifest.spec.temperature,
        "seed": manifest.spec.seed,
        "created_at": manifest.created_at.isoformat(),
        "counts": manifest.counts,
        "tunes": tunes,
    }


def json_for_script(data: Any) -> str:
    """JSON that cannot end its ``<script>`` block nor open a comment: ``<>&`` as \\u escapes."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _length(tune: dict[str, Any]) -> str:
    parts = []
    if tune["bars"] is not None:
        parts.append(f"{tune['bars']} bars")
    if tune["seconds"] is not None:
        minutes, seconds = divmod(round(tune["seconds"]), 60)
        parts.append(f"{minutes}:{seconds:02d}")
    return " · ".join(parts) or "—"


def _yes_no(value: object) -> str:
    return "yes" if value is True else "no" if value is False else str(value)


def facts(tune: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(css name, label, text) of each fact shown under a tune's title; absent ones are left out."""
    rows = [
        ("meter", "Meter", tune["meter"] or "—"),
        ("key", "Key", tune["key"] or "—"),
        ("length", "Length", _length(tune)),
    ]
    if tune.get("primed_by"):
        rows.append(("primed_by", "Primed by", str(tune["primed_by"])))
    if "valid" in tune:
        rows.append(("valid", "Valid (abc2midi)", _yes_no(tune["valid"])))
    if "rhythm_ok" in tune:
        rows.append(("rhythm_ok", "Rhythm check", _yes_no(tune["rhythm_ok"])))
    if "similarity" in tune:
        rows.append(("similarity", "Similarity", f"{float(tune['similarity']):.2f}"))
    if "nearest_title" in tune:
        rows.append(("nearest_title", "Nearest training tune", str(tune["nearest_title"])))
    if tune.get("reasons"):
        rows.append(("reasons", "Notes", "; ".join(str(r) for r in tune["reasons"])))
    if tune.get("tries") is not None:
        rows.append(("tries", "Tries", str(tune["tries"])))
    if tune["status"] != "done":
        rows.append(
            (
                "status",
                "Status",
                tune["status"] + (f": {tune['error']}" if tune.get("error") else ""),
            )
        )
    return rows


def tune_card(tune: dict[str, Any]) -> str:
    tid = _e(tune["id"])
    files: dict[str, str] = tune["files"]
    out = [f'<article class="tune" id="{tid}" data-tune="{tid}">']
    out.append(f'<h2 class="title">{_e(tune["title"])}</h2><dl class="facts">')
    for name, label, text in facts(tune):
        out.append(f'<div class="fact-{name}"><dt>{_e(label)}</dt><dd>{_e(text)}</dd></div>')
    out.append('</dl><div class="notation">')
    if "svg" in files:
        out.append(
            f'<img class="fallback" src="{_e(files["svg"])}" loading="lazy" '
            f'alt="Sheet music of {_e(tune["title"])} (abcm2ps)">'
        )
    out.append("</div>")
    sources = [(fmt, mime) for fmt, mime in AUDIO_TYPES.items() if fmt in files]
    if sources:
        out.append('<audio controls preload="none">')
        out.extend(f'<source src="{_e(files[fmt])}" type="{mime}">' for fmt, mime in sources)
        out.append("</audio>")
    links = " ".join(
        f'<a href="{_e(path)}" download>{_e(fmt)}</a>' for fmt, path in sorted(files.items())
    )
    out.append(f'<p class="downloads">Download: {links}</p></article>')
    return "".join(out)


def render_index(data: dict[str, Any]) -> str:
    batch = _e(data["batch_id"])
    model = data["model"]
    summary = (
        f"{len(data['tunes'])} tunes · model {_e(str(model.get('id') or '')[:12])} "
        f"({_e(model.get('preset') or '?')}, corpus {_e(model.get('corpus') or '?')}) · "
        f"temperature {_e(data['temperature'])} · seed {_e(data['seed'])} · "
        f"{_e(data['created_at'][:16].replace('T', ' '))} UTC"
    )
    cards = "\n".join(tune_card(t) for t in data["tunes"])
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tunebatch · {batch}</title>
<link rel="stylesheet" href="assets/gallery.css">
<script src="assets/abcjs-basic-min.js" defer></script>
<script src="assets/gallery.js" defer></script>
</head>
<body>
<header>
<h1>Batch {batch}</h1>
<p class="summary">{summary}</p>
<form id="controls" class="controls" hidden>
<input id="search" type="search" placeholder="Search titles" aria-label="Search titles">
<select id="meter" aria-label="Meter"><option value="">Any meter</option></select>
<select id="key" aria-label="Key"><option value="">Any key</option></select>
<select id="quality" aria-label="Quality"><option value="">Any quality</option></select>
<select id="sort" aria-label="Sort">
<option value="index">Batch order</option>
<option value="length-asc">Shortest first</option>
<option value="length-desc">Longest first</option>
<option value="similarity-asc">Least similar to training first</option>
<option value="similarity-desc">Most similar to training first</option>
</select>
<label><input id="favourites-only" type="checkbox"> Favourites only</label>
<button id="export-ids" type="button">Export favourite ids</button>
<button id="export-abc" type="button">Export tunebook (.abc)</button>
<output id="shown" aria-live="polite"></output>
</form>
<noscript><p class="noscript">JavaScript is off: the sheet music below is abcm2ps's SVG where
the batch has it; filters, favourites and the playback cursor need JavaScript.</p></noscript>
</header>
<main id="tunes">
<div id="list" class="list"></div>
<p id="more" class="more" hidden>Loading more tunes…</p>
<noscript><div class="list static">
{cards}
</div></noscript>
</main>
<script type="application/json" id="tune-data">{json_for_script(data)}</script>
</body>
</html>
"""


def copy_assets(dest: Path) -> None:
    """The page's own script and style and the vendored abcjs, from the package data.

    Each file is written atomically as a new file: a symlink planted at its name in a shared
    folder is replaced, never written through (`common.files.write_output_file`)."""
    own_subdir(dest, "gallery assets folder")
    root = resources.files("producer") / "gallery_assets"
    for name in ASSET_FILES:
        write_output_file(dest / name, (root / name).read_bytes())
    for name in ABCJS_FILES:
        write_output_file(dest / name, (root / "abcjs" / name).read_bytes())


def build_gallery(store: ArtifactStore, batch_id: str, to: Path, *, workers: int = 8) -> Gallery:
    """Write the batch's gallery into ``to``: the files come from ``store`` (local or bucket)."""
    manifest = read_manifest(store, batch_id)
    output_dir(to, "--to")
    fetched = fetch_batch(store, batch_id, to, workers=workers)
    abc_of: dict[str, str] = {}
    for tune in manifest.tunes:
        if any(f.format == "abc" for f in tune.files):
            path = fetched.directory / f"{tune.tune_id}.abc"  # just fetched: ours, hash-checked
            abc_of[tune.tune_id] = path.read_text(encoding="utf-8", errors="replace")
    copy_assets(to / "assets")  # overwrites our files only: --to may name a folder in use
    index = to / "index.html"
    write_output_file(index, render_index(page_data(manifest, abc_of)).encode("utf-8"))
    log.info("gallery of %s: %s (%d tunes)", batch_id, index, len(manifest.tunes))
    return Gallery(index=index, tunes=len(manifest.tunes), downloaded=fetched.downloaded)
