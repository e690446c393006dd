"""`producer gallery` and `producer tunebook` without a browser: files, escaping, both modes.

The page itself is driven in Chromium by test_gallery_browser.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from common.jobs.batches import manifest_key
from common.store.s3 import S3Store
from producer import options
from producer.gallery import CSP, count_bars, facts, json_for_script, tune_entry
from producer.gallery_cli import make_server
from tests import servers as srv
from tests.producer.conftest import HOSTILE_TITLES, GalleryBatch
from tests.producer_cli import run

ASSETS = Path(__file__).resolve().parents[2] / "producer" / "gallery_assets"


class Links(HTMLParser):
    """Every src/href of a page, and the content of its CSP meta tag."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.batch_links: list[str] = []
        self.csp: str | None = None
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a" and "in-batch" in (found.get("class") or "").split():
            self.batch_links.append(found["href"] or "")
            return
        self.urls += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if tag == "meta" and found.get("http-equiv") == "Content-Security-Policy":
            self.csp = found.get("content")
        if tag == "script":
            self.scripts.append(found)


def page_data(index: Path) -> dict[str, object]:
    text = index.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="tune-data">(.*?)</script>', text, re.S)
    assert match, "no tune data block"
    data: dict[str, object] = json.loads(match.group(1))
    return data


def assert_self_contained(index: Path, batch_dir: Path | None = None) -> None:
    """Every URL of the page is relative and names a file inside the site folder, but the
    download links to the batch's own files (formats the gallery does not copy), which name
    files of `batch_dir`."""
    site = index.parent.resolve()
    parser = Links()
    parser.feed(index.read_text(encoding="utf-8"))
    assert parser.urls
    for url in parser.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url
        target = (site / parts.path).resolve()
        assert target.is_relative_to(site) and target.is_file(), url
    if batch_dir is None:
        assert parser.batch_links == []
    for url in parser.batch_links:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url
        target = (site / unquote(parts.path)).resolve()
        assert batch_dir is not None and target.parent == batch_dir.resolve(), url
        assert target.is_file() and target.suffix == ".wav", url
    assert parser.csp == CSP
    assert "script-src 'self';" in CSP and "default-src 'none'" in CSP
    # Our two scripts by src, and one data block; nothing inline that runs.
    assert [s.get("src") for s in parser.scripts] == [
        "assets/abcjs-basic-min.js", "assets/gallery.js", None,
    ]  # fmt: skip
    assert parser.scripts[2].get("type") == "application/json"


def test_gallery_embedded_writes_a_self_contained_site(
    embedded: Path, gallery_batch: GalleryBatch, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    code, out, err = run("gallery", gallery_batch.batch_id, "--to", str(site))
    assert code == 0, err
    index = site / "index.html"
    assert out.strip().splitlines()[-1] == str(index.resolve())
    assert_self_contained(index, gallery_batch.data_dir / "batches" / gallery_batch.batch_id)
    assert not list(site.rglob("*.wav"))  # the page plays the OGG: the WAV is not copied
    for name in ("gallery.js", "gallery.css", "abcjs-basic-min.js", "LICENSE.md"):
        assert (site / "assets" / name).is_file()
    data = page_data(index)
    tunes = data["tunes"]
    assert isinstance(tunes, list) and len(tunes) == len(gallery_batch.manifest.tunes)
    for tune, record in zip(tunes, gallery_batch.manifest.tunes, strict=True):
        assert tune["id"] == record.tune_id and tune["title"] == record.title
        assert set(tune["files"]) == {f.format for f in record.files} - {"wav"}
        assert set(tune["batch_files"]) == {"wav"}
        for item in record.files:  # the copies are the manifest's files, byte for byte
            if item.format == "wav":
                continue
            copy = site / tune["files"][item.format]
            assert hashlib.sha256(copy.read_bytes()).hexdigest() == item.sha256
        assert tune["abc"] == (site / tune["files"]["abc"]).read_text(encoding="utf-8")
        assert tune["meter"] in {"6/8", "4/4", "3/4"} and tune["key"] in {"D", "G", "Ador"}
        assert tune["valid"] is True and tune["tries"] >= 1 and tune["bars"] >= 1
    # Rebuilding over the same folder fetches nothing new.
    code, out, err = run("gallery", gallery_batch.batch_id, "--to", str(site))
    assert code == 0 and "(0 files fetched)" in " ".join(out.split()), out


def test_hostile_titles_are_escaped_in_html_and_json(
    embedded: Path, gallery_batch: GalleryBatch, tmp_path: Path
) -> None:
    code, _, err = run("gallery", gallery_batch.batch_id, "--to", str(tmp_path))
    assert code == 0, err
    text = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "window.__pwned" in text  # the titles are on the page, as text
    assert text.count("<script") == 3  # abcjs, gallery.js, the data block
    assert "<img src=x" not in text and '<img src="x' not in text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text
    assert "&quot;&gt;&lt;img src=x onerror=window.__pwned=1&gt;" in text
    titles = {t["id"]: t["title"] for t in page_data(tmp_path / "index.html")["tunes"]}  # type: ignore[attr-defined]
    for tid, title in HOSTILE_TITLES.items():
        assert titles[tid] == title


def test_gallery_defaults_to_the_data_dir(embedded: Path, gallery_batch: GalleryBatch) -> None:
    code, out, err = run("gallery", gallery_batch.batch_id)
    assert code == 0, err
    expected = embedded / "galleries" / gallery_batch.batch_id / "index.html"
    assert out.strip().splitlines()[-1] == str(expected.resolve()) and expected.is_file()


def test_gallery_of_an_unfinished_batch_is_one_line_error(embedded: Path) -> None:
    code, _, err = run("gallery", "b20260101-000000-abcdef")
    assert code != 0 and "Traceback" not in err
    assert "has no manifest yet" in " ".join(err.split())
    code, _, err = run("gallery", "../etc")
    assert code != 0 and "not a valid batch id" in " ".join(err.split())


def test_gallery_from_the_bucket_fetches_files_and_holds_no_urls(
    gallery_batch: GalleryBatch,
    s3_bucket: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Distributed mode: the page is built from the bucket, and refers to local copies only, so
    it plays on after any presigned URL would have expired (and offline)."""
    endpoint, bucket = s3_bucket
    bucket_store = S3Store(
        bucket, endpoint_url=endpoint, region=srv.FAKE_REGION,
        access_key_id=srv.FAKE_ACCESS_KEY_ID, secret_access_key=srv.FAKE_SECRET_ACCESS_KEY,
    )  # fmt: skip
    keys = [f.key for t in gallery_batch.manifest.tunes for f in t.files]
    keys.append(manifest_key(gallery_batch.batch_id))
    for key in keys:
        bucket_store.put_bytes(key, gallery_batch.store.get_bytes(key))
    for key in ("TUNEBATCH_BROKER_URL",):
        monkeypatch.delenv(key, raising=False)
    env = {
        "TUNEBATCH_DATA_DIR": str(tmp_path / "empty-data"), "TUNEBATCH_S3_BUCKET": bucket,
        "TUNEBATCH_S3_ENDPOINT_URL": endpoint, "TUNEBATCH_S3_REGION": srv.FAKE_REGION,
        "TUNEBATCH_S3_ACCESS_KEY_ID": srv.FAKE_ACCESS_KEY_ID,
        "TUNEBATCH_S3_SECRET_ACCESS_KEY": srv.FAKE_SECRET_ACCESS_KEY,
    }  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    options.settings.cache_clear()
    try:
        code, out, err = run("gallery", gallery_batch.batch_id, "--to", str(tmp_path / "site"))
    finally:
        options.settings.cache_clear()
    assert code == 0, err
    index = tmp_path / "site" / "index.html"
    copied = [key for key in keys[:-1] if not key.endswith(".wav")]  # the page plays the OGG
    assert f"({len(copied)} files fetched)" in " ".join(out.split())
    assert_self_contained(index)  # no links to a bucket's files: they would expire
    text = index.read_text(encoding="utf-8")
    assert endpoint not in text and "X-Amz" not in text and bucket not in text
    assert len(page_data(index)["tunes"]) == len(gallery_batch.manifest.tunes)  # type: ignore[arg-type]


def test_tunebook_command_joins_and_renumbers(
    embedded: Path, gallery_batch: GalleryBatch, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("t000007\n# chosen on the page\nt000003, t000007\n", encoding="utf-8")
    code, out, err = run("tunebook", gallery_batch.batch_id, "t000010", "--ids", str(ids))
    assert code == 0, err
    assert out.startswith(
        f"%abc-2.1\n% tunebatch batch {gallery_batch.batch_id}: t000010 t000007 t000003\n\n"
    )
    numbers = re.findall(r"^X:(.*)$", out, re.M)
    assert numbers == ["1", "2", "3"]
    titles = re.findall(r"^T:(.*)$", out, re.M)
    assert titles == ["Tune 10", "Tune 7", "Tune 3"]
    book = tmp_path / "book.abc"
    code, _, err = run("tunebook", gallery_batch.batch_id, "t000010", "--to", str(book))
    assert code == 0 and book.read_text(encoding="utf-8").count("X:") == 1
    code, _, err = run("tunebook", gallery_batch.batch_id, "t999999")
    assert code != 0 and "has no ABC for t999999" in " ".join(err.split())
    code, _, err = run("tunebook", gallery_batch.batch_id, "7")
    assert code != 0 and "is not a tune id" in " ".join(err.split())
    code, _, err = run("tunebook", gallery_batch.batch_id)
    assert code != 0 and "no tune ids given" in " ".join(err.split())


def test_facts_show_the_quality_figures_a_record_has() -> None:
    record = {
        "tune_id": "t000004", "title": "Jig", "status": "done", "tries": 2, "valid": True,
        "rhythm_ok": False, "similarity": 0.8123, "nearest_title": "The Kesh",
        "reasons": ["bar 3 is 7/8 long"], "primed_by": "oneills:12",
        "render": {"midi_seconds": 75.4},
        "files": [{"format": "abc", "key": "batches/b/t000004.abc"}],
    }  # fmt: skip
    abc = "X:1\nT:Jig\nR:Double jig\nM:6/8\nL:1/8\nK:Ador\n|:ABA cBA|ded cBA:|\n"
    shown = {name: text for name, _, text in facts(tune_entry(record, abc, "b"))}
    assert shown == {
        "type": "jig", "meter": "6/8", "key": "Ador", "length": "2 bars · 1:15",
        "tempo": "Q:3/8=112", "primed_by": "oneills:12", "valid": "no errors",
        "rhythm_ok": "no", "similarity": "0.81", "nearest_title": "The Kesh",
        "reasons": "bar 3 is 7/8 long", "tries": "2",
    }  # fmt: skip
    nested = {"tune_id": "t000006", "status": "done", "files": [],
              "quality": {"rhythm_ok": True, "similarity": 0.25}}  # fmt: skip
    shown = {name: text for name, _, text in facts(tune_entry(nested, None, "b"))}
    assert shown["rhythm_ok"] == "yes" and shown["similarity"] == "0.25"
    bare = {"tune_id": "t000005", "status": "failed", "error": "abc2midi said no", "files": []}
    shown = {name: text for name, _, text in facts(tune_entry(bare, None, "b"))}
    assert shown == {"meter": "—", "key": "—", "length": "—", "status": "failed: abc2midi said no"}


@pytest.mark.parametrize(
    ("abc", "bars"),
    [
        ("X:1\nK:D\n|:abc d|efg a:|\nfed|]\n", 3),
        ("X:1\nK:G\nab|cd|ef\n", 3),
        ("X:1\nK:G\n% only a comment\n", 0),
        ("X:1\nT:t\nK:G\nAB|\nW:words|here\ncd||\n", 2),
        # Two 8-bar parts with pickups: 16 bars as a musician counts them (18 barred bars).
        (
            "X:1\nM:4/4\nL:1/8\nK:D\n|:AB|"
            + "c2d2 e2f2|" * 7
            + "g6:|\n|:fg|"
            + "a8|" * 7
            + "d6:|\n",
            16,
        ),
    ],
)
def test_count_bars(abc: str, bars: int) -> None:
    assert count_bars(abc) == bars


def test_json_for_script_cannot_end_its_block() -> None:
    value = {"title": "</script><!-- <script>&", "abc": "T:a\u2028b"}
    text = json_for_script(value)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == value


def test_vendored_abcjs_is_the_pinned_release_with_its_licence() -> None:
    folder = ASSETS / "abcjs"
    version = (folder / "VERSION").read_text().strip()
    script = (folder / "abcjs-basic-min.js").read_bytes()
    expected = (folder / "SHA256SUMS").read_text().split()[0]
    assert hashlib.sha256(script).hexdigest() == expected, "run scripts/update_abcjs.sh"
    assert f"abcjs_basic v{version}".encode() in script
    assert "Permission is hereby granted" in (folder / "LICENSE.md").read_text()


def test_serve_answers_on_loopback_only(
    embedded: Path, gallery_batch: GalleryBatch, tmp_path: Path
) -> None:
    code, _, err = run("gallery", gallery_batch.batch_id, "--to", str(tmp_path))
    assert code == 0, err
    server = make_server(tmp_path, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/index.html", timeout=10) as page:
            assert page.read() == (tmp_path / "index.html").read_bytes()
        ogg = f"{gallery_batch.batch_id}/t000000.ogg"
        data = (tmp_path / ogg).read_bytes()
        with urllib.request.urlopen(f"{base}/{ogg}", timeout=10) as audio:
            assert audio.headers["Content-Type"] == "audio/ogg"
            assert audio.read() == data
        # Byte ranges, as a browser asks for them to seek in the audio.
        for asked, first, last in (("100-199", 100, 199), ("-50", len(data) - 50, len(data) - 1),
                                   ("1000-", 1000, len(data) - 1)):  # fmt: skip
            request = urllib.request.Request(f"{base}/{ogg}", headers={"Range": f"bytes={asked}"})
            with urllib.request.urlopen(request, timeout=10) as part:
                assert part.status == 206
                assert part.headers["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
                assert part.read() == data[first : last + 1]
        beyond = urllib.request.Request(
            f"{base}/{ogg}", headers={"Range": f"bytes={len(data) + 10}-"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(beyond, timeout=10)
        assert refused.value.code == 416
    finally:
        server.shutdown()
        server.server_close()


def test_a_tune_type_is_shown_only_where_the_meter_agrees() -> None:
    bare = {"tune_id": "t000001", "status": "done", "files": []}
    reel = tune_entry(bare, "X:1\nT:a\nR:reel\nM:C|\nL:1/8\nK:D\nABcd efga|\n", "b")
    assert (reel["type"], reel["tempo"]) == ("reel", "1/2=100")
    wrong = tune_entry(bare, "X:1\nT:a\nR:Reel\nM:6/8\nL:1/8\nK:D\nABc def|\n", "b")
    assert wrong["type"] is None and wrong["tempo"] is None  # not filterable as a reel
    shown = {name: text for name, _, text in facts(wrong)}
    assert shown["type"] == "reel? (R: against the meter)"
    own = tune_entry(bare, "X:1\nT:a\nR:jig\nM:6/8\nQ:3/8=90\nL:1/8\nK:D\nABc def|\n", "b")
    assert own["tempo"] == "3/8=90"  # the tune's own Q: wins
    assert tune_entry(bare, "X:1\nT:a\nM:6/8\nL:1/8\nK:D\nABc def|\n", "b")["type"] is None


def pdf_pages(data: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?!s)", data))


def test_tunebook_of_the_whole_batch_as_abc_and_as_a_pdf(
    embedded: Path, gallery_batch: GalleryBatch, practice_batch: str, tmp_path: Path
) -> None:
    tunes = len(gallery_batch.manifest.tunes)
    code, out, err = run("tunebook", gallery_batch.batch_id, "--all")
    assert code == 0, err
    assert re.findall(r"^X:(\d+)$", out, re.M) == [str(n) for n in range(1, tunes + 1)]
    book = tmp_path / "book.pdf"
    code, _, err = run("tunebook", gallery_batch.batch_id, "--all", "--pdf", "--to", str(book))
    assert code == 0, err
    data = book.read_bytes()
    # The tiny model's tunes are long lines of empty bars, about a page each (one of them may
    # run over a page); the practice tunes below are what a tunebook of real tunes looks like.
    assert data.startswith(b"%PDF-") and 10 <= pdf_pages(data) <= 2 * tunes, pdf_pages(data)
    practice = tmp_path / "practice.pdf"
    code, _, err = run("tunebook", practice_batch, "--all", "--pdf", "--to", str(practice))
    assert code == 0 and pdf_pages(practice.read_bytes()) == 1  # three real tunes on one page
    code, _, err = run("tunebook", gallery_batch.batch_id, "--all", "--pdf")
    assert code != 0 and "--to" in err
