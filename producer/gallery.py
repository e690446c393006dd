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
- The gallery copies the one audio format the page plays (ogg, else mp3, else wav, else flac:
  the formats table's order for a page, `common.formats.PAGE_AUDIO`),
  not every format of the batch: a WAV is ten times an OGG, and copying both made the demo's
  20-tune gallery 117 MB. The other audio formats stay download links to the batch's own files
  where the store is a local folder (`batch_links`); from a bucket, `producer fetch` gets them.
"""

from __future__ import annotations

import html
import json
import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from common.abc.notation import header_fields
from common.abc.rhythm import check_rhythm
from common.abc.tunetype import type_of
from common.files import output_dir, own_subdir, write_output_file
from common.formats import PAGE_AUDIO, TABLE
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

#: Audio formats in the order the page offers them, with their ``<source type>``: the browser
#: plays the first it can (the formats table's `PAGE_AUDIO`).
AUDIO_TYPES = {fmt.name: fmt.content_type for fmt in PAGE_AUDIO}

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
    #: Bytes of the batch's files copied into the gallery (its assets not counted).
    size: int = 0


def count_bars(abc: str) -> int:
    """Bars as a musician counts them: a pickup and the closing bar that completes it are one
    bar, so an AABB tune of two 8-bar parts is 16 bars with or without pickups (the rhythm
    check's `parts`); a tune whose bars cannot be read that way counts its barlines."""
    result = check_rhythm(abc)
    return sum(result.parts) if result.parts else result.bars


def ogg_seconds(data: bytes) -> float | None:
    """Playing time of an Ogg Vorbis file: the last page's granule position (samples) over the
    sample rate of the identification header; None for anything else.

    The card shows the length of the audio it plays, as its player does (the MIDI's length is
    shorter by the synthesiser's last note dying away: "0:32" on the card, "0:34" in the player),
    without the page loading every file's metadata: a media element that has loaded its
    metadata holds a few MB of decoder state.
    """
    header = data.find(b"\x01vorbis")
    last = data.rfind(b"OggS")
    if header < 0 or last < 0 or len(data) < max(header + 16, last + 14):
        return None
    rate = int.from_bytes(data[header + 12 : header + 16], "little")
    granule = int.from_bytes(data[last + 6 : last + 14], "little", signed=True)
    return granule / rate if rate > 0 and granule > 0 else None


def audio_format(formats: set[str]) -> str | None:
    """The audio format the page plays from these: the first of `AUDIO_TYPES` present."""
    return next((fmt for fmt in AUDIO_TYPES if fmt in formats), None)


def tune_entry(
    tune: dict[str, Any],
    abc: str | None,
    folder: str,
    copied: set[str] | None = None,
    links: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What the page knows of one tune: the record's fields plus facts read from its ABC.

    ``copied``: the formats the gallery holds (None: all); ``links``: where each of the others
    can be downloaded from, by format (the batch's own files)."""
    fields = header_fields(abc) if abc else {}
    render = tune.get("render") or {}
    kind = type_of(abc) if abc else None
    rhythm = check_rhythm(abc) if abc else None
    entry: dict[str, Any] = {
        "id": tune["tune_id"],
        "title": tune.get("title") or fields.get("T") or tune["tune_id"],
        "status": str(tune.get("status", "")),
        "meter": fields.get("M", ""),
        "key": fields.get("K", ""),
        "type": kind.name if kind and kind.checked else None,
        "type_label": kind.label if kind else None,
        "tempo": fields.get("Q") or (kind.tempo if kind else None),
        "parts": rhythm.parts if rhythm and len(rhythm.parts) > 1 else [],
        "bars": count_bars(abc) if abc else tune.get("bars"),
        "seconds": render.get("midi_seconds"),
        # The notes' playing time, which the cursor and the loops map the audio onto; "seconds"
        # becomes the audio's own length where the gallery can read it (`ogg_seconds`).
        "midi_seconds": render.get("midi_seconds"),
        "primed_by": tune.get("primed_by"),
        "tries": tune.get("tries"),
        "truncated": tune.get("truncated"),
        "error": tune.get("error"),
        "abc": abc,
        "files": {
            f["format"]: f"{folder}/{Path(f['key']).name}"
            for f in tune.get("files", [])
            if copied is None or f["format"] in copied
        },
        "batch_files": {
            f["format"]: links[f["key"]]
            for f in tune.get("files", [])
            if copied is not None and f["format"] not in copied and links and f["key"] in links
        },
    }
    # The figures may sit on the record itself or in a nested "quality" object.
    nested = tune.get("quality")
    figures = {**tune, **nested} if isinstance(nested, dict) else tune
    for name in QUALITY_FIELDS:
        if figures.get(name) is not None:
            entry[name] = figures[name]
    return entry


def page_data(
    manifest: Manifest,
    abc_of: dict[str, str],
    copied: set[str] | None = None,
    links: dict[str, str] | None = None,
    audio_seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    tunes = [
        tune_entry(
            t.model_dump(mode="json"), abc_of.get(t.tune_id), manifest.batch_id, copied, links
        )
        for t in manifest.tunes
    ]
    for tune in tunes:
        if audio_seconds and tune["id"] in audio_seconds:
            tune["seconds"] = audio_seconds[tune["id"]]
        tune["facts"] = facts(tune)  # the script shows the same facts as the static page
    return {
        "batch_id": manifest.batch_id,
        "model": {k: manifest.model.get(k) for k in ("id", "corpus", "preset", "epochs")},
        "temperature": manifest.spec.temperature,
        "seed": manifest.spec.seed,
        "created_at": manifest.created_at.isoformat(),
        "counts": manifest.counts,
        # The script's players and exports take these from here, not from a table of their own.
        "audio": list(AUDIO_TYPES),
        "content_types": {fmt.name: fmt.content_type for fmt in TABLE},
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
        minutes, seconds = divmod(int(tune["seconds"]), 60)  # as a player shows it: 0:40.9 is 0:40
        parts.append(f"{minutes}:{seconds:02d}")
    return " · ".join(parts) or "—"


def _yes_no(value: object) -> str:
    return "yes" if value is True else "no" if value is False else str(value)


def facts(tune: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(css name, label, text) of each fact shown under a tune's title; absent ones are left out."""
    rows = []
    if tune.get("type_label"):
        rows.append(("type", "Type", str(tune["type_label"])))
    rows += [
        ("meter", "Meter", tune["meter"] or "—"),
        ("key", "Key", tune["key"] or "—"),
        ("length", "Length", _length(tune)),
    ]
    if tune.get("tempo"):
        rows.append(("tempo", "Tempo", f"Q:{tune['tempo']}"))
    if tune.get("primed_by"):
        rows.append(("primed_by", "Primed by", str(tune["primed_by"])))
    if "valid" in tune:
        verdict = {True: "no errors", False: "errors"}.get(tune["valid"], str(tune["valid"]))
        rows.append(("valid", "abc2midi", verdict))
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
        [f'<a href="{_e(path)}" download>{_e(fmt)}</a>' for fmt, path in sorted(files.items())]
        + [
            f'<a class="in-batch" href="{_e(path)}" download>{_e(fmt)}</a>'
            for fmt, path in sorted(tune.get("batch_files", {}).items())
        ]
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
<details id="tools" open><summary>Search, filters, export, print</summary>
<form id="controls" class="controls" hidden>
<input id="search" type="search" placeholder="Search titles" aria-label="Search titles">
<select id="type" aria-label="Tune type"><option value="">Any type</option></select>
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
<button id="export-abc" type="button">Export shown tunes (.abc)</button>
<button id="print" type="button">Print shown tunes</button>
<output id="shown" aria-live="polite"></output>
</form>
</details>
<noscript><p class="noscript">JavaScript is off: the sheet music below is abcm2ps's SVG where
the batch has it; filters, favourites and the playback cursor need JavaScript.</p></noscript>
</header>
<main id="tunes">
<p id="none" class="none" hidden>No tune matches the search and filters.
<button id="reset" type="button">Show all tunes</button></p>
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
    copied = gallery_formats(manifest)
    fetched = fetch_batch(store, batch_id, to, workers=workers, formats=copied)
    abc_of: dict[str, str] = {}
    for tune in manifest.tunes:
        if any(f.format == "abc" for f in tune.files):
            path = fetched.directory / f"{tune.tune_id}.abc"  # just fetched: ours, hash-checked
            abc_of[tune.tune_id] = path.read_text(encoding="utf-8", errors="replace")
    copy_assets(to / "assets")  # overwrites our files only: --to may name a folder in use
    index = to / "index.html"
    seconds = {}
    for tune in manifest.tunes:
        ogg = fetched.directory / f"{tune.tune_id}.ogg"
        if "ogg" in copied and ogg.is_file():
            length = ogg_seconds(ogg.read_bytes())
            if length is not None:
                seconds[tune.tune_id] = length
    data = page_data(manifest, abc_of, copied, batch_links(store, manifest, to, copied), seconds)
    write_output_file(index, render_index(data).encode("utf-8"))
    log.info("gallery of %s: %s (%d tunes)", batch_id, index, len(manifest.tunes))
    return Gallery(
        index=index, tunes=len(manifest.tunes), downloaded=fetched.downloaded, size=fetched.bytes
    )


def gallery_formats(manifest: Manifest) -> set[str]:
    """The formats the gallery copies: every format of the batch but the audio it does not play."""
    formats = {f.format for tune in manifest.tunes for f in tune.files}
    played = audio_format(formats)
    return {fmt for fmt in formats if fmt not in AUDIO_TYPES or fmt == played}


def batch_links(
    store: ArtifactStore, manifest: Manifest, to: Path, copied: set[str]
) -> dict[str, str]:
    """key -> a relative link from the gallery to the batch's own file, for the formats not
    copied, where the store is a local folder (a bucket's files need `producer fetch`)."""
    links = {}
    for tune in manifest.tunes:
        for item in tune.files:
            local = store.local_path(item.key) if item.format not in copied else None
            if local is not None:
                path = os.path.relpath(local.resolve(), start=to.resolve())
                links[item.key] = quote(Path(path).as_posix())
    return links
