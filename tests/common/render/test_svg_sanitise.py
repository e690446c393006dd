"""The SVG sanitiser against what abcm2ps really writes for each way a tune can inject markup.

abcm2ps is run here directly (outside render, whose allow-list would refuse these tunes before
abcm2ps saw them) so the sanitiser, the second wall, is tested on the real tool's output. A real
browser (headless Chromium through Playwright, where installed) then opens each sanitised score
and must run no script and load no URL.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from common.errors import RenderError
from common.render.svg import sanitise_svg

HEAD = "X:1\nT:Injected\n"
TAIL = "M:4/4\nL:1/8\nK:D\ndAFA dAFA|\nw:la la la la\n"

#: The injection classes: abcm2ps writes each of these values raw into its SVG.
CASES = {
    "bgcolor-attribute": HEAD + 'I:bgcolor red"/><script>alert(1)</script><rect fill="red\n' + TAIL,
    # A font value is one word, so the injection cannot close its tag cleanly: the SVG does
    # not parse and is refused (see REFUSED).
    "titlefont-attribute": HEAD + 'I:titlefont Times"/><script>alert(2)</script><g\n' + TAIL,
    "vocalfont-attribute": HEAD + '%%vocalfont Times"/><image/onload="alert(7)"/><g\n' + TAIL,
    "musicfont-url": HEAD + "%%musicfont url(http://evil.invalid/font.woff) Bravura\n" + TAIL,
    "prefix-change-beginsvg": HEAD
    + "%%ss-pref #\n%#beginsvg\n<script>alert(3)</script>"
    + '<foreignObject><div xmlns="http://www.w3.org/1999/xhtml" onclick="alert(4)">x</div>'
    + '</foreignObject><a href="javascript:alert(5)"><rect width="9" height="9"/></a>'
    + "<style>@import url(http://evil.invalid/x.css);</style>\n%#endsvg\n"
    + TAIL,
    "abcm2ps-prefix-beginsvg": HEAD
    + "%%abcm2ps #\n%#beginsvg\n"
    + '<set attributeName="href" to="javascript:alert(6)"/><use xlink:href="http://e.invalid/#a"/>'
    + "\n%#endsvg\n"
    + TAIL,
}


def _abcm2ps(tmp_path: Path, text: str) -> bytes:
    exe = shutil.which("abcm2ps")
    if exe is None:
        pytest.skip("abcm2ps is not installed")
    (tmp_path / "t.abc").write_text(text)
    subprocess.run([exe, "-S", "-q", "-g", "-O", "t.svg", "t.abc"], cwd=tmp_path,
                   capture_output=True, timeout=30, check=False)  # fmt: skip
    return (tmp_path / "t001.svg").read_bytes()


def _assert_inert(data: bytes) -> None:
    root = ET.fromstring(data)
    lowered = data.lower()
    for needle in (b"<script", b"foreignobject", b"javascript:", b"http://evil", b"@import",
                   b"onload", b"onclick", b"<set"):  # fmt: skip
        assert needle not in lowered, needle
    for element in root.iter():
        for key, value in element.attrib.items():
            assert not key.rsplit("}", 1)[-1].lower().startswith("on")
            if key.rsplit("}", 1)[-1] == "href":
                assert value.startswith("#")


#: Cases whose raw SVG is not well-formed XML: refused whole, never stored.
REFUSED = {"titlefont-attribute", "vocalfont-attribute"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_injection_class_comes_out_inert_or_refused(name: str, tmp_path: Path) -> None:
    raw = _abcm2ps(tmp_path, CASES[name])
    assert b"evil.invalid" in raw or b"alert(" in raw, (
        "abcm2ps does not write this value raw: the case tests nothing"
    )
    if name in REFUSED:
        with pytest.raises(RenderError, match="not well-formed"):
            sanitise_svg(raw)
        return
    clean = sanitise_svg(raw)
    assert clean.removed
    _assert_inert(clean.data)
    # The music survives: the staff, the notes (<use href="#hd">), the title.
    assert b'href="#hd"' in clean.data and b">Injected<" in clean.data


def test_a_score_cut_mid_character_is_refused(tmp_path: Path) -> None:
    title = "e" + "\u0301" * 300  # abcm2ps cuts the long title by bytes, inside a character
    raw = _abcm2ps(tmp_path, f"X:1\nT:{title}\n{TAIL}")
    with pytest.raises(RenderError, match="not well-formed"):
        sanitise_svg(raw)


def test_entities_are_not_expanded() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&b;</text></svg>'
    )
    with pytest.raises(RenderError):
        sanitise_svg(bomb)


def test_local_references_and_plain_styles_are_kept() -> None:
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
        b'<style>.fill {fill: url(#grad)} .x {background: url("http://a.invalid/i.png")}</style>'
        b'<use xlink:href="#hd" x="1"/><rect style="fill:url(#g);stroke:url(https://b.invalid)"/>'
        b"</svg>"
    )
    clean = sanitise_svg(svg).data
    assert b"url(#grad)" in clean and b"url(#g)" in clean and b'href="#hd"' in clean
    assert b"a.invalid" not in clean and b"b.invalid" not in clean


def test_a_browser_runs_nothing_from_a_sanitised_score(tmp_path: Path) -> None:
    """Independent check: headless Chromium opens every sanitised score (as <object> would,
    so scripts could run) and must see no dialog and make no request beyond the file."""
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium")
    pages = []
    for name, text in sorted(CASES.items()):
        if name in REFUSED:
            continue
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "clean.svg"
        path.write_bytes(sanitise_svg(_abcm2ps(folder, text)).data)
        pages.append(path)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            dialogs: list[str] = []
            requests: list[str] = []

            def on_dialog(dialog: Any) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            page.on("request", lambda r: requests.append(r.url))
            for path in pages:
                page.goto(path.as_uri())
                page.wait_for_timeout(200)
                for element in page.query_selector_all("a, rect, div"):
                    element.dispatch_event("click")
            assert dialogs == []
            assert all(url.startswith("file://") for url in requests), requests
        finally:
            browser.close()


# -- CSS by what it can do: escapes, tails, every URL-taking function ---------------------------

#: Each way CSS in an SVG can make a browser fetch a URL, spelt to slip past a pattern for
#: ``url(`` / ``@import``. ``{u}`` is the attacker's URL (a local server in the browser test).
CSS_ATTACKS = {
    "import-escaped": "<style>@\\69mport '{u}/import-escaped';</style>",
    "import-escaped-url": "<style>@\\69mport u\\72l({u}/import-escaped-url);</style>",
    "import-comment": "<style>@im/**/port '{u}/import-comment';</style>",
    "url-escaped": "<style>rect {{fill: u\\72l({u}/url-escaped#x)}}</style>",
    "url-escaped-long": "<style>rect {{fill: \\000075rl({u}/url-escaped-long#x)}}</style>",
    "url-in-tail": "<style>.a {{}}<g/>rect {{fill: url({u}/url-in-tail#x)}}</style>",
    "import-in-tail": "<style><g/>@import url({u}/import-in-tail);</style>",
    "image-set": '<style>svg {{background-image: image-set("{u}/image-set" 1x)}}</style>',
    "webkit-image-set": (
        "<style>svg {{background-image: -webkit-image-set(url({u}/webkit-image-set) 1x)}}</style>"
    ),
    "cross-fade": (
        "<style>svg {{background-image: cross-fade(url({u}/cross-fade) 50%, url(#a))}}</style>"
    ),
    "font-face": (
        "<style>@font-face {{font-family: x; src: url({u}/font-face)}} text {{font-family: x}}"
        "</style>"
    ),
    "string-in-comment": '<style>svg {{x: "/*"}} svg {{background: url({u}/string-in-comment)}}'
    ' svg {{y: "*/"}}</style>',
    "style-attribute-escaped": (
        '<rect width="9" height="9" style="fill: u\\72l({u}/style-attr#x)"/>'
    ),
    "style-attribute-image-set": (
        '<rect width="9" height="9" style="fill: red; background: image-set(\'{u}/style-is\' 1x)"/>'
    ),
    "fill-attribute": '<rect width="9" height="9" fill="url({u}/fill-attribute#x)"/>',
    "filter-attribute": '<rect width="9" height="9" filter="url({u}/filter-attribute#f)"/>',
    "mask-attribute-escaped": '<rect width="9" height="9" mask="u\\72l({u}/mask#m)"/>',
    "cursor": "<style>svg {{cursor: url({u}/cursor), auto}}</style>",
}


def _hostile_svg(body: str, base: str) -> bytes:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'width="100" height="100"><text x="5" y="20">music</text>'
        + body.format(u=base)
        + '<rect id="a" width="1" height="1"/></svg>'
    ).encode()


@pytest.mark.parametrize("name", sorted(CSS_ATTACKS))
def test_css_that_could_load_a_url_is_taken_out_in_any_spelling(name: str) -> None:
    clean = sanitise_svg(_hostile_svg(CSS_ATTACKS[name], "http://attacker.invalid"))
    assert clean.removed, name
    assert b"attacker.invalid" not in clean.data
    assert b"\\" not in clean.data  # nothing left for a browser to decode differently
    assert b"@" not in clean.data


def test_abcm2ps_own_stylesheet_is_kept(tmp_path: Path) -> None:
    raw = _abcm2ps(tmp_path, HEAD + TAIL)
    clean = sanitise_svg(raw)
    assert clean.removed == {}
    for rule in (b".fill {fill: currentColor}", b".stroke {stroke: currentColor; fill: none}",
                 b"text {white-space: pre; fill: currentColor}"):  # fmt: skip
        assert rule in clean.data


def test_a_chromium_opening_a_sanitised_svg_directly_requests_nothing(tmp_path: Path) -> None:
    """Independent check, in the browser: every attack above, sanitised and opened directly as
    a file (not through the gallery's <img> and CSP), makes no request to the attacker's server
    (a real HTTP server on a free loopback port). The raw SVGs, opened the same way, do reach it:
    the check can see a request."""
    import http.server
    import threading

    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium")
    hits: list[str] = []

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    raw_files, clean_files = [], []
    for name, body in sorted(CSS_ATTACKS.items()):
        raw = _hostile_svg(body, base)
        (tmp_path / f"raw-{name}.svg").write_bytes(raw)
        (tmp_path / f"clean-{name}.svg").write_bytes(sanitise_svg(raw).data)
        raw_files.append(tmp_path / f"raw-{name}.svg")
        clean_files.append(tmp_path / f"clean-{name}.svg")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                for path in clean_files:
                    page.goto(path.as_uri())
                    page.wait_for_timeout(300)
                clean_hits = list(hits)
                for path in raw_files:
                    page.goto(path.as_uri())
                    page.wait_for_timeout(300)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    assert clean_hits == []
    assert len(set(hits)) >= 5, hits  # the raw attacks do fetch: the server sees requests
