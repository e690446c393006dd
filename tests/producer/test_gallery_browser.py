"""The gallery page in a real browser: Debian's Chromium, headless, driven by Playwright.

Against the session's real 50-tune batch (tests/producer/conftest.py), opened from ``file://``.
Every test watches the page: a console error, an uncaught exception, or a request for anything
but the site's own files fails it (requests are intercepted and anything else is aborted).
Screenshots go to the test's tmp folder (docs/gallery.png is one of them).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, sync_playwright

from bench.gallery import CHROMIUM, CHROMIUM_ARGS, TARGET_MS, measure_load, replicate_batch
from common.store.local import LocalStore
from producer.gallery import build_gallery, facts, page_data, render_index
from producer.tunebook import export_tunebook, parse_ids
from tests.producer.conftest import HOSTILE_TITLES, GalleryBatch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def site(gallery_batch: GalleryBatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gallery-site")
    return build_gallery(gallery_batch.store, gallery_batch.batch_id, folder).index


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Watch:
    """What a page did that it must not: console errors, exceptions, requests outside the site."""

    site: str
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        url = route.request.url
        self.requests.append(url)
        if url.startswith((self.site, "blob:", "data:")):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def assert_clean(self) -> None:
        assert self.errors == []
        assert self.outside == []
        assert self.requests, "no request was seen: the interception is not working"


def open_page(browser: Browser, index: Path, *, javascript: bool = True) -> tuple[Page, Watch]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, accept_downloads=True,
        java_script_enabled=javascript,
    )  # fmt: skip
    watch = Watch(site=index.parent.as_uri() + "/")
    context.route("**/*", watch.route)
    page = context.new_page()
    page.on("console", lambda m: watch.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: watch.errors.append(f"uncaught: {e}"))
    page.on("request", lambda r: None if r.url.startswith((watch.site, "blob:", "data:"))
            else watch.outside.append(r.url))  # fmt: skip
    page.goto(index.as_uri())
    if javascript:
        page.wait_for_selector("html[data-ready='1']", timeout=30_000)
    return page, watch


@pytest.fixture
def opened(browser: Browser, site: Path) -> Iterator[tuple[Page, Watch]]:
    page, watch = open_page(browser, site)
    yield page, watch
    page.context.close()


def load_every_card(page: Page, expected: int) -> None:
    """Scroll as a reader would until the list has built every card."""
    for _ in range(50):
        if page.locator("#list article.tune").count() >= expected:
            return
        page.locator("#list article.tune").last.scroll_into_view_if_needed()
        page.wait_for_timeout(100)
    raise AssertionError(f"only {page.locator('#list article.tune').count()} of {expected} cards")


def test_every_tune_shows_notation_and_audio_that_loads(
    opened: tuple[Page, Watch], gallery_batch: GalleryBatch, tmp_path: Path
) -> None:
    page, watch = opened
    tunes = gallery_batch.manifest.tunes
    page.screenshot(path=str(tmp_path / "gallery.png"))
    load_every_card(page, len(tunes))
    for tune in tunes:
        card = page.locator(f"article#{tune.tune_id}")
        card.scroll_into_view_if_needed()
        heads = card.locator(".notation svg .abcjs-notehead")
        heads.first.wait_for(timeout=10_000)
        assert heads.count() >= 1, tune.tune_id
    audio_tunes = {t.tune_id for t in tunes if {"ogg", "wav"} & {f.format for f in t.files}}
    assert len(audio_tunes) >= 45  # the batch is real: nearly every tune rendered
    durations = page.evaluate(
        """async () => Promise.all(Array.from(document.querySelectorAll('#list audio')).map(a =>
             new Promise(done => {
               const report = () => done([a.closest('article').id, a.currentSrc, a.duration]);
               if (a.readyState >= 1) report();
               else {
                 a.addEventListener('loadedmetadata', report);
                 a.addEventListener('error', report);
                 a.load();
               }
             })))"""
    )
    assert {row[0] for row in durations} == audio_tunes
    for tid, src, duration in durations:
        assert src.endswith((f"{tid}.ogg", f"{tid}.wav")) and duration > 0, (tid, src, duration)
    watch.assert_clean()


def test_playback_starts_and_the_cursor_follows(opened: tuple[Page, Watch], tmp_path: Path) -> None:
    page, watch = opened
    card = page.locator("#list article.tune").first
    card.locator(".notation svg .abcjs-notehead").first.wait_for()
    card.locator("button.play").click()
    page.wait_for_function(
        "() => { const a = document.querySelector('#list audio');"
        " return !a.paused && a.currentTime > 0.3; }",
        timeout=10_000,
    )
    page.wait_for_function(
        "() => document.querySelectorAll('#list .score .playing').length > 0", timeout=5_000
    )
    first = int(card.get_attribute("data-cursor") or "-1")
    page.wait_for_function(
        f"() => Number(document.querySelector('#list article.tune').dataset.cursor) > {first}",
        timeout=5_000,
    )
    assert card.locator("button.play").text_content() == "❚❚ Pause"
    page.screenshot(path=str(tmp_path / "playing.png"))
    card.locator("button.play").click()
    page.wait_for_function("() => document.querySelector('#list audio').paused")
    watch.assert_clean()


def shown(page: Page) -> tuple[int, list[str]]:
    count = int(page.locator("#list").get_attribute("data-shown") or "-1")
    return count, page.locator("#list article.tune").evaluate_all("cards => cards.map(c => c.id)")


def test_filters_search_and_sort_change_the_list(
    opened: tuple[Page, Watch], gallery_batch: GalleryBatch
) -> None:
    page, watch = opened
    tunes = gallery_batch.manifest.tunes
    total, ids = shown(page)
    assert total == len(tunes) and ids[:3] == ["t000000", "t000001", "t000002"]

    page.select_option("#meter", "6/8")
    count, ids = shown(page)
    six_eight = [t.tune_id for t in tunes if t.index % 3 == 0]  # the fixture's primers
    assert count == len(six_eight) and ids == six_eight[: len(ids)]
    page.select_option("#key", "G")
    count, ids = shown(page)
    assert ids == [t.tune_id for t in tunes if t.index % 3 == 0 and (t.index // 3) % 3 == 1]
    page.select_option("#meter", "")
    page.select_option("#key", "")

    page.fill("#search", "tune 4")
    count, ids = shown(page)
    expected = [t.tune_id for t in tunes if "tune 4" in (t.title or "").lower()]
    assert count == len(expected) == 11 and ids == expected  # Tune 4, Tune 40..49
    page.fill("#search", "no such tune")
    assert shown(page)[0] == 0
    page.fill("#search", "")

    page.select_option("#quality", "valid")
    assert shown(page)[0] == sum(t.valid is True for t in tunes)
    page.select_option("#quality", "")

    page.select_option("#sort", "length-desc")
    data = page.evaluate("JSON.parse(document.getElementById('tune-data').textContent).tunes")
    length = {t["id"]: (t["seconds"] if t["seconds"] is not None else t["bars"]) for t in data}
    _, ids = shown(page)
    assert [length[i] for i in ids] == sorted((length[i] for i in ids), reverse=True)
    assert ids != [t.tune_id for t in tunes][: len(ids)]
    watch.assert_clean()


def test_favourites_persist_and_export_as_ids_and_tunebook(
    browser: Browser, site: Path, gallery_batch: GalleryBatch, tmp_path: Path
) -> None:
    page, watch = open_page(browser, site)
    chosen = ["t000000", "t000003", "t000005"]
    for tid in chosen:
        page.locator(f"article#{tid} button.favourite").click()
    assert (
        page.locator(f"article#{chosen[0]} button.favourite").get_attribute("aria-pressed")
        == "true"
    )
    page.reload()
    page.wait_for_selector("html[data-ready='1']")
    page.check("#favourites-only")
    assert shown(page) == (3, chosen)  # kept in localStorage across the reload

    with page.expect_download() as info:
        page.click("#export-ids")
    ids_file = tmp_path / "ids.txt"
    info.value.save_as(ids_file)
    assert ids_file.read_text() == "".join(f"{tid}\n" for tid in chosen)
    with page.expect_download() as info:
        page.click("#export-abc")
    assert info.value.suggested_filename == f"{gallery_batch.batch_id}-favourites.abc"
    book = tmp_path / "book.abc"
    info.value.save_as(book)
    # The page's tunebook is, byte for byte, the one `producer tunebook --ids` makes from its ids.
    expected = export_tunebook(
        gallery_batch.store, gallery_batch.batch_id, parse_ids(ids_file.read_text())
    )
    assert book.read_text(encoding="utf-8") == expected
    assert re.findall(r"^X:(\d+)$", expected, re.M) == ["1", "2", "3"]

    page.locator(f"article#{chosen[1]} button.favourite").click()  # unmark, while filtered
    assert shown(page) == (2, [chosen[0], chosen[2]])
    watch.assert_clean()
    page.context.close()


def test_hostile_titles_are_text_and_run_nothing(opened: tuple[Page, Watch]) -> None:
    page, watch = opened
    page.wait_for_timeout(300)  # give an injected handler (there must be none) time to fire
    for tid, title in HOSTILE_TITLES.items():
        card = page.locator(f"article#{tid}")
        card.locator(".notation svg").first.wait_for()
        assert card.locator("h2.title").text_content() == title
        assert card.locator("h2.title *").count() == 0  # no element made from the title
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src=x]").count() == 0 and page.locator("#list script").count() == 0
    watch.assert_clean()


def test_with_javascript_off_the_abcm2ps_svg_shows(
    browser: Browser, site: Path, gallery_batch: GalleryBatch, tmp_path: Path
) -> None:
    page, watch = open_page(browser, site, javascript=False)
    tunes = gallery_batch.manifest.tunes
    images = page.locator("main img.fallback")
    assert images.count() == sum(any(f.format == "svg" for f in t.files) for t in tunes) >= 45
    images.first.wait_for()
    for i in range(images.count()):
        images.nth(i).scroll_into_view_if_needed()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('main img.fallback'))"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=15_000,
    )
    page.evaluate("window.scrollTo(0, 0)")
    assert page.locator("main audio").count() >= 45 and page.locator("h2.title").count() == len(
        tunes
    )
    assert page.locator("#controls").is_hidden()
    page.screenshot(path=str(tmp_path / "no-javascript.png"))
    watch.assert_clean()
    page.context.close()


def test_a_thousand_tunes_are_usable_within_two_seconds(
    gallery_batch: GalleryBatch,
    browser: Browser,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = LocalStore(tmp_path / "data")
    big = replicate_batch(
        gallery_batch.store, gallery_batch.batch_id, store, 1000, skip=frozenset({"wav", "mid"})
    )
    index = build_gallery(store, big, tmp_path / "site").index
    rows: list[dict[str, Any]] = measure_load(index, runs=3, browser=browser)
    median = statistics.median(r["ready_ms"] for r in rows)
    times = ", ".join(f"{r['ready_ms']:.0f}" for r in rows)
    with capsys.disabled():
        print(
            f"\ngallery of 1,000 tunes, headless Chromium: ready in {times} ms (median "
            f"{median:.0f} ms; search+clear {max(r['filter_ms'] for r in rows):.0f} ms at most)"
        )
    assert all(r["cards"] <= 48 for r in rows)  # a page or two of cards is built, not 1,000
    assert median < TARGET_MS


def test_quality_figures_show_filter_and_sort_once_records_have_them(
    browser: Browser, gallery_batch: GalleryBatch, tmp_path: Path
) -> None:
    """The quality checks add rhythm_ok, reasons, similarity and nearest_title to tune records;
    the page shows, filters and sorts by them as soon as they are there."""
    index = build_gallery(gallery_batch.store, gallery_batch.batch_id, tmp_path).index
    data = page_data(gallery_batch.manifest, abc_texts(index.parent, gallery_batch))
    for n, tune in enumerate(data["tunes"]):
        tune.update(rhythm_ok=n % 4 != 0, similarity=round((n * 37 % 100) / 100, 2),
                    nearest_title=f"O'Neill's {n}")  # fmt: skip
        if n % 4 == 0:
            tune["reasons"] = ["bar 2 is 5/8 long in 6/8"]
        tune["facts"] = facts(tune)
    index.write_text(render_index(data), encoding="utf-8")
    page, watch = open_page(browser, index)
    card = page.locator("article#t000004")
    assert card.locator(".fact-similarity dd").text_content() == "0.48"
    assert card.locator(".fact-nearest_title dd").text_content() == "O'Neill's 4"
    assert card.locator(".fact-rhythm_ok dd").text_content() == "no"
    assert card.locator(".fact-reasons dd").text_content() == "bar 2 is 5/8 long in 6/8"
    page.select_option("#quality", "rhythm_bad")
    assert shown(page) == (13, [f"t{n:06d}" for n in range(0, 50, 4)][:13])
    page.select_option("#quality", "")
    page.select_option("#sort", "similarity-desc")
    similarity = {t["id"]: t["similarity"] for t in data["tunes"]}
    _, ids = shown(page)
    assert [similarity[i] for i in ids] == sorted(similarity.values(), reverse=True)[: len(ids)]
    watch.assert_clean()
    page.context.close()


def abc_texts(site: Path, batch: GalleryBatch) -> dict[str, str]:
    folder = site / batch.batch_id
    return {t.tune_id: (folder / f"{t.tune_id}.abc").read_text() for t in batch.manifest.tunes}
