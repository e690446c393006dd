"""The bar tracker's rules for fields: the header, field lines in the body and inline ``[X:...]``.

Only values abc2midi reads without an ``Error`` may be written: ``X:`` a number; ``M:`` ``C``,
``C|`` or n/d with d a power of two up to 16; ``L:`` 1/d up to 1/32; ``K:`` a tonic A-G, an
optional ``#`` or ``b`` and a mode from `KEY_MODES`; free text that does not start with ``:``
(abc2midi takes ``T::x`` for a repeat sign). ``K:`` must come after ``M:`` and ends the header.
"""

from __future__ import annotations

from common.lstm.bar_rules import (
    A_ACC_RESET,
    A_BODY_START,
    A_DEN,
    A_L_END,
    A_L_END_BODY,
    A_M_C,
    A_M_CC,
    A_M_END,
    A_M_END_BODY,
    A_NUM,
    BODY_FIELDS,
    DIGITS,
    EV_DECO,
    HEADER_FIELDS,
    KEY_SUFFIXES,
    Cond,
    Grammar,
    Rule,
    bit,
)


def meter_value(g: Grammar, p: str, end: str, done: Rule) -> None:
    """``C``, ``C|`` or n/d (n ≤ 99, d in 1 2 4 8 16), then `end`."""
    g.add(p + "0", lambda ch: {" ": Rule(p + "0"), "C": Rule(p + "C", 0, A_M_C)}.get(ch)
          or (Rule(p + "N1", 0, A_NUM) if ch in "123456789" else None))  # fmt: skip
    g.add(p + "C", lambda ch: Rule(p + "CC", 0, A_M_CC) if ch == "|" else
          (done if ch == end else None))  # fmt: skip
    g.add(p + "CC", lambda ch: done if ch == end else None)
    g.add(p + "N1", lambda ch: Rule(p + "N2", 0, A_NUM) if ch in DIGITS else
          (Rule(p + "S") if ch == "/" else None))  # fmt: skip
    g.add(p + "N2", lambda ch: Rule(p + "S") if ch == "/" else None)
    g.add(p + "S", lambda ch: Rule(p + "D1", 0, A_DEN) if ch == "1" else
          (Rule(p + "D", 0, A_DEN) if ch in "248" else None))  # fmt: skip
    g.add(p + "D1", lambda ch: Rule(p + "D", 0, A_DEN) if ch == "6" else
          (done if ch == end else None))  # fmt: skip
    g.add(p + "D", lambda ch: done if ch == end else None)


def unit_value(g: Grammar, p: str, end: str, done: Rule) -> None:
    """``1/d`` with d in 1 2 4 8 16 32, then `end`."""
    g.add(p + "0", lambda ch: Rule(p + "1") if ch == "1" else
          (Rule(p + "0") if ch == " " else None))  # fmt: skip
    g.add(p + "1", lambda ch: Rule(p + "S") if ch == "/" else None)
    g.add(p + "S", lambda ch: Rule(p + "D1", 0, A_DEN) if ch == "1" else
          (Rule(p + "D3", 0, A_DEN) if ch == "3" else
           (Rule(p + "D", 0, A_DEN) if ch in "248" else None)))  # fmt: skip
    g.add(p + "D1", lambda ch: Rule(p + "D", 0, A_DEN) if ch == "6" else
          (done if ch == end else None))  # fmt: skip
    g.add(p + "D3", lambda ch: Rule(p + "D", 0, A_DEN) if ch == "2" else None)
    g.add(p + "D", lambda ch: done if ch == end else None)


def text_value(g: Grammar, p: str, end: str, done: Rule) -> None:
    """Free text up to `end`, not starting with ':' or '|' (abc2midi reads a body's ``T::`` and
    ``T:|`` as a trill and a barline), nor, in a header, empty."""
    g.add(p + "0", lambda ch: done if ch == end else (None if ch in "\n:|" else Rule(p + "1")))
    g.add(p + "1", lambda ch: done if ch == end else (None if ch == "\n" else Rule(p + "1")))


def key_value(g: Grammar, p: str, end: str, done: Rule) -> None:
    """A tonic, then one of `KEY_SUFFIXES` (a trie of modes), then `end`."""
    prefixes = {s[:i] for s in KEY_SUFFIXES for i in range(len(s) + 1)}
    g.add(p + "0", lambda ch: Rule(p + ":") if ch in "ABCDEFG" else
          (Rule(p + "0") if ch == " " else None))  # fmt: skip
    for node in prefixes:

        def rule(ch: str, node: str = node) -> Rule | None:
            if ch == end and node in KEY_SUFFIXES:
                return done
            return Rule(p + ":" + node + ch) if node + ch in prefixes else None

        g.add(p + ":" + node, rule)


def fields(g: Grammar, prefix: str, end: str, after: str, meter_done: int, unit_done: int) -> None:
    """Field letter, ':' and value, for header lines, body lines or inline ``[X:...]``."""
    reset = Rule(prefix + "M0", 0, A_ACC_RESET)
    g.add(prefix + "FM", lambda ch: reset if ch == ":" else None)
    g.add(prefix + "FL", lambda ch: Rule(prefix + "L0", 0, A_ACC_RESET) if ch == ":" else None)
    g.add(prefix + "FK", lambda ch: Rule(prefix + "K0") if ch == ":" else None)
    g.add(prefix + "FO", lambda ch: Rule(prefix + "O0") if ch == ":" else None)
    meter_value(g, prefix + "M", end, Rule(after, 0, meter_done))
    unit_value(g, prefix + "L", end, Rule(after, 0, unit_done))
    text_value(g, prefix + "O", end, Rule(after))
    key_after = Rule("B_LS", 0, A_BODY_START) if prefix == "H" else Rule(after)
    key_value(g, prefix + "K", end, key_after)


def build_fields(g: Grammar) -> None:
    """The header from ``X:`` to ``K:``, and the line starts of the body."""
    g.add("H_START", lambda ch: Rule("HX") if ch == "X" else None)
    g.add("HX", lambda ch: Rule("HX0") if ch == ":" else None)
    g.add("HX0", lambda ch: Rule("HX1") if ch in DIGITS else None)
    g.add("HX1", lambda ch: Rule("HX1") if ch in DIGITS else (Rule("H_LS") if ch == "\n" else None))

    def header_line(ch: str) -> Rule | None:
        if ch == "K":
            return Rule("HFK", bit(Cond.METER))
        if ch in "ML":
            return Rule("HF" + ch, bit(Cond.NOMETER if ch == "M" else Cond.NOUNIT))
        if ch in HEADER_FIELDS:
            return Rule("HFO")
        return Rule("HC") if ch == "%" else None

    g.add("H_LS", header_line)
    g.add("HC", lambda ch: Rule("H_LS") if ch == "\n" else Rule("HC"))
    fields(g, "H", "\n", "H_LS", A_M_END, A_L_END)
    fields(g, "BF", "\n", "B_LS", A_M_END_BODY, A_L_END_BODY)
    fields(g, "IF", "]", "B_SEP", A_M_END_BODY, A_L_END_BODY)

    def line_start(ch: str) -> Rule | None:
        if ch in ("\n", "X"):
            return Rule("FREE", bit(Cond.END))  # the tune ends here
        if ch == "T":  # a field T: or a trill on the first note
            return Rule("LST", bit(Cond.NOTE), event=EV_DECO)
        if ch in BODY_FIELDS:
            letter = "BFF" + (ch if ch in "MLK" else "O")
            return Rule(letter, bit(Cond.BARSTART))
        return g.sep(ch)

    g.add("B_LS", line_start)
    g.add("LST", lambda ch: Rule("BFO0", bit(Cond.BARSTART)) if ch == ":" else
          g.rules["PRED"](ch))  # fmt: skip
