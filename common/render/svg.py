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
* **CSS by what it can do, not by how it is spelt** (`clean_stylesheet`, `clean_declarations`):
  CSS escapes (``@\69mport``, ``u\72l(``) and comments are decoded first, the way a browser's
  tokenizer reads them; then a ``<style>`` element (all its text, the tails of any child
  elements too — the children go) is **rebuilt** from what passes an allow-list: plain
  ``selector {property: value}`` rules whose values hold only words, numbers, colours, quoted
  font names, a few maths and colour functions (``rgb()``, ``translate()``...) and ``url(#id)``
  references into the same document. Every at-rule (``@import``, ``@font-face``...) and every
  other function — each one that can take a URL: ``url(http...)``, ``image()``,
  ``image-set()``, ``-webkit-image-set()``, ``cross-fade()``, ``src()``... — goes, and so does
  a ``style=""`` declaration or a presentation attribute (``fill``, ``filter``, ``mask``...)
  holding one. The rebuilt text has no backslash, comment or stray quote, so the browser reads
  exactly what was checked. abcm2ps's own ``<style>`` (``.fill``, ``.stroke``, ``text``) passes
  unchanged in meaning;
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
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20]+")

#: Functions a kept CSS value may call: colours and geometry, none of which takes a URL.
_SAFE_FUNCTIONS = (
    "rgb", "rgba", "hsl", "hsla", "calc", "translate", "translatex", "translatey", "scale",
    "scalex", "scaley", "rotate", "matrix", "skewx", "skewy",
)  # fmt: skip
_SAFE_CALL = re.compile(rf"\b(?:{'|'.join(_SAFE_FUNCTIONS)})\(\s*[0-9A-Za-z .,%+#-]*\)", re.I)
_LOCAL_URL = re.compile(r"""\burl\(\s*(["']?)#[A-Za-z0-9_.-]*\1\s*\)""", re.IGNORECASE)
_FONT_NAME = re.compile(r"""(["'])[A-Za-z0-9 _-]*\1""")
#: What a kept value may hold once its calls, local references and font names are set aside.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9 .,%#+_/!-]*")
_PROPERTY = re.compile(r"-{0,2}[A-Za-z][A-Za-z0-9-]*")
_SELECTOR = re.compile(r"[A-Za-z0-9_.#*, >-]+")
_RULE = re.compile(r"([^{}]*)\{([^{}]*)\}")
_HEX = "0123456789abcdefABCDEF"


def css_decode(text: str) -> str:
    r"""`text` as a CSS tokenizer reads it: escapes decoded (``\69`` → ``i``, ``\:`` → ``:``),
    comments replaced by a space; strings are copied (with their escapes decoded), since a
    ``/*`` inside a string starts no comment."""
    if "\\" not in text and "/*" not in text:
        return text  # nothing to decode (most attributes: numbers and path data)
    out: list[str] = []
    i, n = 0, len(text)
    quote = ""
    while i < n:
        c = text[i]
        if c == "\\":
            i, decoded = _css_escape(text, i + 1)
            out.append(decoded)
            continue
        if quote:
            if c == quote:
                quote = ""
            out.append(c)
            i += 1
        elif c in "\"'":
            quote = c
            out.append(c)
            i += 1
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            i = n if close < 0 else close + 2
            out.append(" ")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _css_escape(text: str, i: int) -> tuple[int, str]:
    """(index after, character) of the escape whose backslash is just before `i`."""
    if i >= len(text):
        return i, "\ufffd"
    j = i
    while j < len(text) and j - i < 6 and text[j] in _HEX:
        j += 1
    if j == i:  # not hex: the character itself (a newline: a line continuation, nothing)
        return i + 1, "" if text[i] in "\n\r\f" else text[i]
    code = int(text[i:j], 16)
    if text.startswith("\r\n", j):
        j += 2
    elif j < len(text) and text[j] in " \t\n\r\f":
        j += 1
    if code == 0 or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return j, "\ufffd"
    return j, chr(code)


def _safe_value(value: str) -> bool:
    """Whether a decoded CSS value can load nothing: see the module docstring."""
    rest = _LOCAL_URL.sub(" ", value)
    rest = _SAFE_CALL.sub(" ", rest)
    rest = _FONT_NAME.sub(" ", rest)
    return _SAFE_VALUE.fullmatch(rest) is not None


def clean_declarations(text: str, removed: dict[str, int]) -> str:
    """The declarations of `text` (a ``style=""`` value or a rule's body) that pass, decoded
    and re-written as ``name: value; ...``; each one dropped is counted."""
    return _declarations(css_decode(text), removed)


def _declarations(decoded: str, removed: dict[str, int]) -> str:
    kept = []
    for declaration in decoded.split(";"):
        if not declaration.strip():
            continue
        name, colon, value = declaration.partition(":")
        name, value = name.strip(), " ".join(value.split())
        if colon and _PROPERTY.fullmatch(name) and _safe_value(value):
            kept.append(f"{name}: {value}")
        else:
            removed["css declaration"] = removed.get("css declaration", 0) + 1
    return "; ".join(kept)


def clean_stylesheet(text: str, removed: dict[str, int]) -> str:
    """A stylesheet rebuilt from the rules of `text` that pass (see the module docstring)."""
    decoded = css_decode(text)
    rules = []
    end = 0
    for match in _RULE.finditer(decoded):
        selector = " ".join(match.group(1).split())
        skipped = decoded[end : match.start()]
        end = match.end()
        if skipped.strip() or not _SELECTOR.fullmatch(selector):
            removed["css rule"] = removed.get("css rule", 0) + 1
            continue
        body = _declarations(match.group(2), removed)
        rules.append(f"{selector} {{{body}}}")
    if decoded[end:].strip():
        removed["css rule"] = removed.get("css rule", 0) + 1
    return "\n" + "\n".join(rules) + "\n" if rules else ""


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
        local = _split(key)[1].lower()
        why = _bad_attribute(local, value)
        if (
            why is None
            and local != "style"
            and not _safe_value(" ".join(css_decode(value).split()))
        ):
            why = "CSS in an attribute"
        if why is not None:
            removed[why] = removed.get(why, 0) + 1
            del element.attrib[key]
        elif local == "style":
            style = clean_declarations(value, removed)
            if style:
                element.attrib[key] = style
            else:
                del element.attrib[key]
    if _split(element.tag)[1].lower() == "style":
        # The browser reads every piece of text inside <style>, a child's tail too.
        text = "".join(element.itertext())
        for child in list(element):
            removed["element in <style>"] = removed.get("element in <style>", 0) + 1
            element.remove(child)
        element.text = clean_stylesheet(text, removed)


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


__all__ = ["Sanitised", "clean_declarations", "clean_stylesheet", "css_decode", "sanitise_svg"]
