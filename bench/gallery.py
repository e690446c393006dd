"""Gallery load time: how soon a 1,000-tune page is usable in headless Chromium.

Takes a finished batch (e.g. the one `make demo` makes), copies its tunes round-robin into a new
1,000-tune batch on local disk (new ids, numbered titles, files re-hashed, a real manifest), builds
its gallery with `producer.gallery.build_gallery`, and opens ``index.html`` from ``file://`` in
Debian's Chromium through Playwright, ``--runs`` times in fresh pages. It prints per run:

* ``ready_ms``: ``performance.now()`` when the page marks itself ready (``html[data-ready]``):
  the tune data parsed, every card wired up and the tunes in view drawn by abcjs;
* ``dom_ms``: DOMContentLoaded, for comparison (HTML parsed, no script run yet);
* ``filter_ms``: typing a search that hides most tunes, then clearing it (two filter passes
  over every card) — the page must stay responsive at this size;
* ``wall_s``: from ``page.goto`` to ready, as a user waits for it.

and the median ready time against the 2 s target. The formats copied are the batch's minus
``wav`` (the page plays ogg/mp3 first; a thousand WAVs would only cost disk).

    python bench/gallery.py --data-dir artifacts --batch b20261129-...   # after `make demo`
    python bench/gallery.py --data-dir artifacts --batch ... --count 200 --runs 1 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.jobs.batches import manifest_key, tune_key  # noqa: E402
from common.jobs.fetch import read_manifest  # noqa: E402
from common.schemas import ArtifactFile, Manifest, TuneStatus, new_batch_id, tune_id  # noqa: E402
from common.store.base import ArtifactStore  # noqa: E402
from common.store.local import LocalStore  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
#: Debian's Chromium, headless, with nothing that phones home (the tests check no request
#: leaves the page; these keep the browser's own background traffic out of that count).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
TARGET_MS = 2000.0


def replicate_batch(
    src: ArtifactStore, batch_id: str, dst: ArtifactStore, count: int, *, skip: frozenset[str]
) -> str:
    """A new finished batch of ``count`` tunes in ``dst``, copied round-robin from ``batch_id``."""
    manifest = read_manifest(src, batch_id)
    sources = [t for t in manifest.tunes if t.status == TuneStatus.DONE] or manifest.tunes
    new_id = new_batch_id()
    tunes = []
    for index in range(count):
        original = sources[index % len(sources)]
        tid = tune_id(index)
        title = f"{original.title or original.tune_id} ({index})"
        files = []
        for item in original.files:
            if item.format in skip:
                continue
            data = src.get_bytes(item.key)
            if item.format == "abc":
                text = data.decode("utf-8")
                text = text.replace(f"T:{original.title}", f"T:{title}", 1)
                data = text.encode("utf-8")
            key = tune_key(new_id, tid, item.format)
            info = dst.put_bytes(key, data)
            files.append(
                ArtifactFile(format=item.format, key=key, size=info.size, sha256=info.sha256)
            )
        tunes.append(
            original.model_copy(
                update={
                    "batch_id": new_id,
                    "tune_id": tid,
                    "index": index,
                    "title": title,
                    "files": files,
                    "primed_by": None,
                }
            )
        )
    spec = manifest.spec.model_copy(update={"count": count, "primers": None, "primed_by": None})
    counts: dict[str, int] = {}
    for tune in tunes:
        counts[tune.status.value] = counts.get(tune.status.value, 0) + 1
    copy = Manifest(
        batch_id=new_id, created_at=manifest.created_at, finished_at=manifest.finished_at,
        spec=spec, model=manifest.model, tool_versions=manifest.tool_versions,
        software=manifest.software, counts=counts, tunes=tunes,
    )  # fmt: skip
    dst.put_bytes(manifest_key(new_id), copy.model_dump_json(indent=2).encode("utf-8"))
    return new_id


def measure_load(index: Path, runs: int = 3, browser: Any = None) -> list[dict[str, float]]:
    """Open ``index`` ``runs`` times in fresh pages of ``browser`` (default: a Chromium of its
    own); the figures described in the module docstring."""
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            own = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                return measure_load(index, runs, own)
            finally:
                own.close()
    rows = []
    for _ in range(runs):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        start = time.perf_counter()
        page.goto(index.as_uri())
        page.wait_for_selector("html[data-ready='1']", timeout=60_000)
        wall = time.perf_counter() - start
        figures = page.evaluate(
            """() => {
              const nav = performance.getEntriesByType('navigation')[0];
              const search = document.getElementById('search');
              const t0 = performance.now();
              search.value = '(99';
              search.dispatchEvent(new Event('input', {bubbles: true}));
              search.value = '';
              search.dispatchEvent(new Event('input', {bubbles: true}));
              return {ready_ms: window.__galleryReadyMs,
                      dom_ms: nav.domContentLoadedEventEnd,
                      filter_ms: performance.now() - t0,
                      cards: document.querySelectorAll('#list article.tune').length};
            }"""
        )
        rows.append({**figures, "wall_s": wall})
        page.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="TUNEBATCH_DATA_DIR of the batch."
    )
    parser.add_argument("--batch", required=True, help="A finished batch to copy tunes from.")
    parser.add_argument("--count", type=int, default=1000, help="Tunes in the measured page.")
    parser.add_argument("--runs", type=int, default=3, help="Page loads (fresh pages).")
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    args = parser.parse_args()

    from producer.gallery import build_gallery

    with tempfile.TemporaryDirectory(prefix="gallery-bench-") as tmp:
        store = LocalStore(Path(tmp) / "data")
        big = replicate_batch(LocalStore(args.data_dir), args.batch, store, args.count,
                              skip=frozenset({"wav"}))  # fmt: skip
        started = time.perf_counter()
        gallery = build_gallery(store, big, Path(tmp) / "site")
        build_s = time.perf_counter() - started
        size = gallery.index.stat().st_size
        rows = measure_load(gallery.index, args.runs)
    median = statistics.median(r["ready_ms"] for r in rows)
    report: dict[str, Any] = {
        "tunes": args.count, "build_s": build_s, "index_bytes": size, "runs": rows,
        "median_ready_ms": median, "target_ms": TARGET_MS, "met": median <= TARGET_MS,
    }  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"gallery of {args.count} tunes: built in {build_s:.1f} s, index.html {size / 1e6:.1f} MB"
    )
    for n, r in enumerate(rows, 1):
        print(f"  run {n}: ready {r['ready_ms']:.0f} ms (DOMContentLoaded {r['dom_ms']:.0f} ms), "
              f"search+clear {r['filter_ms']:.0f} ms, wall {r['wall_s']:.2f} s")  # fmt: skip
    verdict = "meets" if median <= TARGET_MS else "MISSES"
    print(f"median ready {median:.0f} ms — {verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
