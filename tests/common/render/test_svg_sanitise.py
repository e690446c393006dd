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
