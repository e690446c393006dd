"""Make an SVG score safe to show in a browser before it is stored.

abcm2ps writes several directive values raw into its SVG (``bgcolor`` and the ``*font``
directives into attributes, ``musicfont url(...)`` into an ``@font-face`` rule, ``beginsvg``
blocks verbatim), and it cuts long titles by bytes, so a score can hold live markup or be
invalid XML. The allow-list of `common.abc.directives` keeps those directives out; this module is
the second wall, applied to every SVG whatever made it:

* **parse with defusedxml** (no entity expansion, no external entities, no network); an SVG
  that does not parse — e.g. cut in the middle of a UTF-8 character — is refused, never stored;
* **drop elements** that run code or embed other documents: ``script``, ``foreignObject``,
  ``iframe``, ``embed``, ``object``, ``handler``, ``listener``, and the animation elements
  (``set``, ``animate*``, ``discard``, which can rewrite an ``href`` to ``javascript:``); and
  every element outside the SVG namespace (an injected XHTML element);
* **drop attributes**: every ``on*`` event handler, every ``href`` / ``xlink:href`` / ``src``
  that is not a local ``#fragment``, and any value holding ``javascript:``;
* **neutralise CSS** in ``<style>`` and ``style=""``: ``@import`` rules go, and every
  ``url(...)`` that is not a local ``#fragment`` becomes ``none`` (no external font or image);
* comments and processing instructions go too (abcm2ps writes its command line and the date
  there: nothing a viewer needs, and dropping them makes a re-render byte-identical).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree import ElementTree as ET

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from common.errors import RenderError

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)

_DROPPED_ELEMENTS = frozenset(
    {"script", "foreignobject", "iframe", "embed", "object", "handler", "listener", "set",
     "animate", "animatemotion", "animatetransform", "animatecolor", "discard"}
)  # fmt: skip
_LINK_ATTRIBUTES = frozenset({"href", "src"})
_URL = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.IGNORECASE | re.DOTALL)
_IMPORT = re.compile(r"@import[^;]*;?", re.IGNORECASE)
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20]+")


@dataclass(frozen=True)
class Sanitised:
    """The cleaned SVG and what was taken out of it (e.g. ``{"script": 1}``)."""

    data: bytes
    removed: dict[str, int]


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _is_local_ref(value: str) -> bool:
    return value.strip().startswith("#")


def _clean_css(text: str, removed: dict[str, int]) -> str:
    def url(match: re.Match[str]) -> str:
        if _is_local_ref(match.group(2)):
            return match.group(0)
        removed["url()"] = removed.get("url()", 0) + 1
        return "none"

    if _IMPORT.search(text):
        removed["@import"] = removed.get("@import", 0) + len(_IMPORT.findall(text))
        text = _IMPORT.sub("", text)
    return _URL.sub(url, text)


def _bad_attribute(local: str, value: str) -> str | None:
    name = local.lower()
    if name.startswith("on"):
        return "on* attribute"
    if name in _LINK_ATTRIBUTES and not _is_local_ref(value):
        return "external href"
    if "javascript:" in _SPACE_OR_CONTROL.sub("", value).lower():
        return "javascript: URL"
    return None


def _clean(element: ET.Element, removed: dict[str, int]) -> None:
    for child in list(element):
        if not isinstance(child.tag, str):  # a comment or processing instruction
            element.remove(child)
            continue
        namespace, local = _split(child.tag)
        if namespace != SVG_NS or local.lower() in _DROPPED_ELEMENTS:
            key = local if namespace == SVG_NS else f"{{{namespace}}}{local}"
            removed[key] = removed.get(key, 0) + 1
            element.remove(child)
            continue
        _clean(child, removed)
    for key, value in list(element.attrib.items()):
        why = _bad_attribute(_split(key)[1], value)
        if why is not None:
            removed[why] = removed.get(why, 0) + 1
            del element.attrib[key]
        elif "url(" in value.lower() or "@import" in value.lower():
            element.attrib[key] = _clean_css(value, removed)
    if _split(element.tag)[1].lower() == "style" and element.text:
        element.text = _clean_css(element.text, removed)


def sanitise_svg(data: bytes) -> Sanitised:
    """The SVG `data` without anything that could run, load or embed (see the module docstring).

    Raises `RenderError` when `data` is not a well-formed SVG document.
    """
    try:
        root = SafeET.fromstring(data)
    except (ET.ParseError, DefusedXmlException, ValueError) as exc:
        raise RenderError(
            f"abcm2ps wrote an SVG that is not well-formed XML ({exc}); the score was not "
            "stored (a very long or unusual title is the usual cause: shorten it)",
            tool="abcm2ps",
        ) from exc
    if _split(root.tag) != (SVG_NS, "svg"):
        raise RenderError(f"the score's root element is {root.tag!r}, not an SVG", tool="abcm2ps")
    removed: dict[str, int] = {}
    _clean(root, removed)
    body = ET.tostring(root, encoding="unicode")
    return Sanitised(('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode(), removed)


__all__ = ["Sanitised", "sanitise_svg"]
