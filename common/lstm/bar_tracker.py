"""Per-slot bar tracker: the sampler may only write bars that last what the meter says.

The tracker reads each slot's text char by char as it is sampled, and before every step gives the
sampler a mask of the chars that may come next. The rule it keeps:

* a note (or rest, chord, tuplet, broken pair) may start or grow only if it still fits in the
  bar; a note's length is known only after its suffix (``A``, ``A2``, ``A3/2``, ``A//``), so while
  a note is pending a length char is allowed only if some length it can still become fits;
* a barline may start only when the bar is full — or is a pickup (a short first bar of the tune
  or of a section), or is the short last bar of a section that completes the pickup (then the
  barline must be a section end: ``:|``, ``||``, ``|]``, ``|:``);
* the tune may end (blank line) only after a closed bar, with every ``|:`` closed by ``:|``.

It is a deterministic finite automaton over the ABC it knows (its *modes*: header fields, notes
with their length suffix, chords, grace notes, decorations, annotations, tuplets, broken rhythm,
barlines, inline fields, endings, line continuations) plus a few integers per slot (bar position
in ticks, meter, unit, pickup, tuplet and broken-rhythm state). Anything outside that subset is
masked, so what the model writes is always something the tracker can count. The tables are built
once per vocabulary; a step is a handful of NumPy operations over all B slots at once.

Why it never dead-ends: every duration it allows is a multiple of a quarter of the unit length
``L`` (lengths down to ``/4``; a tuplet's notes share one length, so ``(3`` three of length m last
2m; a broken pair's notes share one length, so ``>`` pairs last 2m), and so is every bar of the
meters it accepts. So a bar that is not full always has room for a note ``A//``, and a bar that
is full always accepts ``|``. A primer that leaves the known subset, or a meter/unit whose bar is
not a whole number of such quarters, turns the tracker off for that tune (mode FREE); a row whose
mask would be empty (a vocabulary that lacks ``/`` or ``|``) does too, and is counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Ticks per whole note: divisible by every duration the tracker allows (unit down to 1/32,
#: lengths down to 1/4 of it, tuplet factors 2/3 and 3/4, broken halves).
TICKS_PER_WHOLE = 1536

NOTE_LETTERS = "ABCDEFGabcdefg"
RESTS = "zx"
LENGTH_CHARS = "0123456789/"
DIGITS = "0123456789"
ACCIDENTALS = "^_="
#: One-char decorations before a note: staccato, roll, trill, fermata, up/down bow.
DECORATIONS = ".~THuv"
#: Notes in a chord, chars in a guitar chord or annotation, and the chars it may hold: short
#: and without barlines, so that a stray quote or bracket cannot swallow the music.
MAX_CHORD = 4
MAX_QUOTE = 10
QUOTE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789#/()+-. ")
#: A guitar chord's name after its root: accidental, quality, extension, bass note.
CHORD_NAME_CHARS = set("#bmajindugs+o679/ABCDEFG")
#: What a key (K:) may be written with: tonic, mode, explicit accidentals, clef words.
KEY_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789#^_=,' ")
#: Field lines the body may hold at a bar start (``K:``, ``M:``, ``L:`` are read; others skipped).
BODY_FIELDS = "KLMPTWwNRQH"

#: Length suffixes a note may carry, as multiples of a quarter of the unit length.
SUFFIXES: dict[str, int] = {
    "": 4, "2": 8, "3": 12, "4": 16, "5": 20, "6": 24, "7": 28, "8": 32, "12": 48, "16": 64,
    "/": 2, "//": 1, "/2": 2, "/4": 1, "3/": 6, "3/2": 6, "3/4": 3,
}  # fmt: skip
VALUES = sorted(set(SUFFIXES.values()))  # distinct lengths, indexed by bit
#: Tuplet (r: r notes) factors: (2 → 3/2, (3 → 2/3, (4 → 3/4 of their written length.
TUPLETS = {2: (3, 2), 3: (2, 3), 4: (3, 4)}

# Per-slot integer state, one column each.
(MODE, POS, BARLEN, Q, PICKUP, PICKOK, NEED, OPENREP, BARS, TUPR, TUPLEFT, TARGET, BRK,
 LASTQ, LASTV, LASTPLAIN, MNUM, MDEN, UDEN, ACCN, ACCD, FULLS) = range(22)  # fmt: skip
FIELDS = 22

# Conditions a (mode, char) may require, one bit each; C_LEN + i is "length char i fits".
(C_TERM, C_NOTE, C_BAR, C_COLON, C_NOTNEED, C_END, C_BARSTART, C_TUP2, C_TUP3, C_TUP4,
 C_BROKEN, C_METER) = range(12)  # fmt: skip
C_LEN = 12

# Actions of a (mode, char); COMMIT (the pending note ends first) is a separate table.
(A_NONE, A_CLOSE, A_CLOSE_COLON, A_SECTION, A_REPOPEN, A_TUP2, A_TUP3, A_TUP4, A_GT, A_LT,
 A_ACC_RESET, A_NUM, A_DEN, A_M_C, A_M_CC, A_M_END, A_L_END, A_BODY_START, A_M_END_BODY,
 A_L_END_BODY) = range(20)  # fmt: skip
N_ACTIONS = 20


def _note_mode(letter: str) -> str:
    """A pending note: C, takes ',' octave marks, c' takes "'" (abc2midi refuses the others)."""
    return "PNU" if letter.isupper() else "PNL"


@dataclass(frozen=True)
class Rule:
    next: str
    cond: int = 0  # bitmask of C_* bits
    action: int = A_NONE


def _bit(*conds: int) -> int:
    out = 0
    for c in conds:
        out |= 1 << c
    return out


def _trie() -> tuple[list[str], dict[str, int]]:
    nodes = sorted({s[:i] for s in SUFFIXES for i in range(len(s) + 1)}, key=lambda s: (len(s), s))
    return nodes, {s: i for i, s in enumerate(nodes)}


class _Grammar:
    """The automaton as readable rules; `BarTracker` compiles it to tables over a vocabulary."""

    def __init__(self) -> None:
        self.nodes, self.node_id = _trie()
        self.modes: list[str] = ["FREE", "H_START", "H_LS", "PNU", "PNU1", "PNL", "PNL1"]
        self.modes += [f"P:{n}" for n in self.nodes]
        self.rules: dict[str, Callable[[str], Rule | None]] = {}

    # -- shared pieces -----------------------------------------------------------------------
    def sep(self, ch: str) -> Rule | None:
        """Between elements of the body."""
        start = self.note_start(ch)
        if start is not None:
            return start
        pre = self.pre_note(ch)
        if pre is not None:
            return pre
        return {
            " ": Rule("B_SEP"),
            "\n": Rule("B_LS"),
            ")": Rule("B_SEP"),
            "\\": Rule("CONT"),
            "[": Rule("LBRACK"),
            "|": Rule("BAR1", _bit(C_BAR), A_CLOSE),
            ":": Rule("COLON1", _bit(C_COLON), A_CLOSE_COLON),
        }.get(ch)

    def note_start(self, ch: str) -> Rule | None:
        """The first char of a note or rest: a pitch letter, a rest or an accidental."""
        if ch in NOTE_LETTERS:
            return Rule(_note_mode(ch), _bit(C_NOTE))
        if ch in RESTS:
            return Rule("P:", _bit(C_NOTE))
        if ch in ACCIDENTALS:
            return Rule("ACC" + ch, _bit(C_NOTE))
        return None

    def pre_note(self, ch: str) -> Rule | None:
        """Things that lead to a note and take no time: the note must fit."""
        if ch in DECORATIONS:
            return Rule("PRE", _bit(C_NOTE))
        return {
            "{": Rule("GRACE0", _bit(C_NOTE)),
            "(": Rule("PAREN", _bit(C_NOTE)),
            "!": Rule("DECO0", _bit(C_NOTE)),
            '"': Rule("Q0", _bit(C_NOTE)),
        }.get(ch)

    def pre(self, ch: str) -> Rule | None:
        """After a decoration, slur, tuplet, grace notes or broken rhythm: a note comes next."""
        start = self.note_start(ch)
        if start is not None:
            return start
        if ch == "[":
            return Rule("CHORD0", _bit(C_NOTE))
        return self.pre_note(ch)

    def after_note(self, ch: str) -> Rule | None:
        """After a note's length is complete (the note is committed first)."""
        extra = {
            "-": Rule("B_SEP"),
            ">": Rule("PRE", _bit(C_BROKEN), A_GT),
            "<": Rule("PRE", _bit(C_BROKEN), A_LT),
        }
        return extra.get(ch) or self.sep(ch)

    def pending(
        self, node: str, octave: int | None, marks: str = ""
    ) -> Callable[[str], Rule | None]:
        """A note or rest whose length suffix is being written; `octave` marks written so far
        (None: no more), `marks` the one octave mark its case takes (C, c')."""
        trie = self.node_id

        def rule(ch: str) -> Rule | None:
            if octave is not None and ch in marks:
                return Rule(f"PN{'U' if marks == ',' else 'L'}1" if octave == 0 else "P:")
            if ch in LENGTH_CHARS:
                child = node + ch
                if child in trie:
                    return Rule(f"P:{child}", _bit(C_LEN + LENGTH_CHARS.index(ch)))
                return None
            return self.after_note(ch)

        return rule

    def add(self, mode: str, rule: Callable[[str], Rule | None]) -> None:
        if mode not in self.modes:
            self.modes.append(mode)
        self.rules[mode] = rule

    def accidentals(self, prefix: str, then: str) -> None:
        """``^``, ``^^``, ``_``, ``__``, ``=`` before a note letter, in body, chord or grace."""
        for acc in ACCIDENTALS:

            def rule(ch: str, acc: str = acc) -> Rule | None:
                if ch in NOTE_LETTERS:
                    return Rule(_note_mode(ch) if then == "PN" else then)
                if ch == acc and acc != "=":
                    return Rule(prefix + "D")
                return None

            self.add(prefix + acc, rule)
        self.add(
            prefix + "D",
            lambda ch: (
                Rule(_note_mode(ch) if then == "PN" else then) if ch in NOTE_LETTERS else None
            ),
        )

    def meter_value(self, prefix: str, end: str, done: Rule) -> None:
        """``C``, ``C|`` or n/d (n ≤ 99, d in 1 2 4 8 16), then `end`."""
        p = prefix
        self.add(p + "0", lambda ch: {" ": Rule(p + "0"), "C": Rule(p + "C", 0, A_M_C)}.get(ch)
                 or (Rule(p + "N1", 0, A_NUM) if ch in "123456789" else None))  # fmt: skip
        self.add(p + "C", lambda ch: Rule(p + "CC", 0, A_M_CC) if ch == "|" else
                 (done if ch == end else None))  # fmt: skip
        self.add(p + "CC", lambda ch: done if ch == end else None)
        self.add(p + "N1", lambda ch: Rule(p + "N2", 0, A_NUM) if ch in DIGITS else
                 (Rule(p + "S") if ch == "/" else None))  # fmt: skip
        self.add(p + "N2", lambda ch: Rule(p + "S") if ch == "/" else None)
        self.add(p + "S", lambda ch: Rule(p + "D1", 0, A_DEN) if ch == "1" else
                 (Rule(p + "D", 0, A_DEN) if ch in "248" else None))  # fmt: skip
        self.add(p + "D1", lambda ch: Rule(p + "D", 0, A_DEN) if ch == "6" else
                 (done if ch == end else None))  # fmt: skip
        self.add(p + "D", lambda ch: done if ch == end else None)

    def unit_value(self, prefix: str, end: str, done: Rule) -> None:
        """``1/d`` with d in 1 2 4 8 16 32, then `end`."""
        p = prefix
        self.add(p + "0", lambda ch: Rule(p + "1") if ch == "1" else
                 (Rule(p + "0") if ch == " " else None))  # fmt: skip
        self.add(p + "1", lambda ch: Rule(p + "S") if ch == "/" else None)
        self.add(p + "S", lambda ch: Rule(p + "D1", 0, A_DEN) if ch == "1" else
                 (Rule(p + "D3", 0, A_DEN) if ch == "3" else
                  (Rule(p + "D", 0, A_DEN) if ch in "248" else None)))  # fmt: skip
        self.add(p + "D1", lambda ch: Rule(p + "D", 0, A_DEN) if ch == "6" else
                 (done if ch == end else None))  # fmt: skip
        self.add(p + "D3", lambda ch: Rule(p + "D", 0, A_DEN) if ch == "2" else None)
        self.add(p + "D", lambda ch: done if ch == end else None)

    def text_value(self, prefix: str, end: str, done: Rule, *, key: bool) -> None:
        """Free text up to `end` (a key must start with a letter A-G)."""
        p = prefix
        if key:
            self.add(p + "0", lambda ch: Rule(p + "1") if ch in "ABCDEFG" else
                     (Rule(p + "0") if ch == " " else None))  # fmt: skip
        else:
            self.add(
                p + "0", lambda ch: done if ch == end else (None if ch == "\n" else Rule(p + "1"))
            )
        chars = KEY_CHARS if key else None

        def rest(ch: str) -> Rule | None:
            if ch == end:
                return done
            if ch == "\n" or (chars is not None and ch not in chars):
                return None
            return Rule(p + "1")

        self.add(p + "1", rest)

    def fields(self, prefix: str, end: str, after: str, meter_done: int, unit_done: int) -> None:
        """Field letter, ':' and value, for header lines, body lines or inline ``[X:...]``."""
        reset = Rule(prefix + "M0", 0, A_ACC_RESET)
        self.add(prefix + "FM", lambda ch: reset if ch == ":" else None)
        self.add(
            prefix + "FL", lambda ch: Rule(prefix + "L0", 0, A_ACC_RESET) if ch == ":" else None
        )
        self.add(prefix + "FK", lambda ch: Rule(prefix + "K0") if ch == ":" else None)
        self.add(prefix + "FO", lambda ch: Rule(prefix + "O0") if ch == ":" else None)
        self.meter_value(prefix + "M", end, Rule(after, 0, meter_done))
        self.unit_value(prefix + "L", end, Rule(after, 0, unit_done))
        self.text_value(prefix + "O", end, Rule(after), key=False)
        key_after = Rule("B_LS", 0, A_BODY_START) if prefix == "H" else Rule(after)
        self.text_value(prefix + "K", end, key_after, key=True)

    # -- the automaton -----------------------------------------------------------------------
    def build(self) -> _Grammar:
        self.add("FREE", lambda ch: Rule("FREE"))
        self.add("H_START", lambda ch: Rule("HFO") if ch == "X" else None)

        def header_line(ch: str) -> Rule | None:
            if ch == "X" or not ch.isascii() or not ch.isalpha():
                return Rule("HC") if ch == "%" else None
            if ch == "K":
                return Rule("HFK", _bit(C_METER))
            return Rule({"M": "HFM", "L": "HFL"}.get(ch, "HFO"))

        self.add("H_LS", header_line)
        self.add("HC", lambda ch: Rule("H_LS") if ch == "\n" else Rule("HC"))
        self.fields("H", "\n", "H_LS", A_M_END, A_L_END)
        self.fields("BF", "\n", "B_LS", A_M_END_BODY, A_L_END_BODY)
        self.fields("IF", "]", "B_SEP", A_M_END_BODY, A_L_END_BODY)

        def line_start(ch: str) -> Rule | None:
            if ch in ("\n", "X"):
                return Rule("FREE", _bit(C_END))  # the tune ends here
            if ch in "TH":  # a field (T:, H:) or a trill/fermata on the first note
                return Rule("LS" + ch, _bit(C_NOTE))
            if ch in BODY_FIELDS:
                letter = "BFF" + (ch if ch in "MLK" else "O")
                return Rule(letter, _bit(C_BARSTART))
            return self.sep(ch)

        self.add("B_LS", line_start)
        for letter in "TH":
            self.add("LS" + letter, lambda ch: Rule("BFFO", _bit(C_BARSTART)) if ch == ":" else
                     (None if ch == ":" else self.pre(ch)))  # fmt: skip
        self.add("B_SEP", self.sep)
        # A continued line goes on at a line start: there too a blank line or X ends the tune,
        # which only a closed bar allows (the sampler stops at any blank line).
        self.add("CONT", lambda ch: Rule("B_LSC") if ch == "\n" else None)

        def continued(ch: str) -> Rule | None:
            if ch in ("\n", "X"):
                return Rule("FREE", _bit(C_END))
            return self.sep(ch)  # no field line inside a continued line

        self.add("B_LSC", continued)
        self.add("PRE", self.pre)

        def paren(ch: str) -> Rule | None:
            if ch in "234":
                r = int(ch)
                return Rule(
                    "PRE", _bit((C_TUP2, C_TUP3, C_TUP4)[r - 2]), (A_TUP2, A_TUP3, A_TUP4)[r - 2]
                )
            return self.pre(ch)

        self.add("PAREN", paren)
        self.add("PNU", self.pending("", 0, ","))
        self.add("PNU1", self.pending("", 1, ","))
        self.add("PNL", self.pending("", 0, "'"))
        self.add("PNL1", self.pending("", 1, "'"))
        for node in self.nodes:
            self.add(f"P:{node}", self.pending(node, None))
        self.accidentals("ACC", "PN")  # PN: the letter's case picks PNU or PNL
        for k in range(1, MAX_CHORD + 1):
            self.accidentals(f"CACC{k}", f"CHORD{k}")
        self.accidentals("GACC", "GRACE")

        def lbrack(ch: str) -> Rule | None:
            if ch in NOTE_LETTERS:
                return Rule("CHORD1", _bit(C_NOTE))
            if ch in ACCIDENTALS:
                return Rule("CACC1" + ch, _bit(C_NOTE))
            if ch == "|":
                return Rule("BAR1", _bit(C_BAR), A_CLOSE)
            if ch in "ML":
                return Rule("IFF" + ch, _bit(C_BARSTART))
            if ch == "K":
                return Rule("IFFK")
            if ch in "12":
                return Rule("B_SEP", _bit(C_BARSTART), A_SECTION)  # an ending [1 [2
            return None

        self.add("LBRACK", lbrack)
        # After '[' in a PRE context: only a chord.
        self.add("CHORD0", lambda ch: Rule("CHORD1") if ch in NOTE_LETTERS else
                 (Rule("CACC1" + ch) if ch in ACCIDENTALS else None))  # fmt: skip

        def chord(k: int, octave_ok: bool) -> Callable[[str], Rule | None]:
            """After the k-th note of a chord (notes carry no length: the chord's comes after ]);
            one octave mark per note at most."""

            def rule(ch: str) -> Rule | None:
                if ch in "',":
                    return Rule(f"CHORD{k}O") if octave_ok else None
                if k < MAX_CHORD and ch in NOTE_LETTERS:
                    return Rule(f"CHORD{k + 1}")
                if k < MAX_CHORD and ch in ACCIDENTALS:
                    return Rule(f"CACC{k + 1}" + ch)
                return Rule("P:") if ch == "]" else None

            return rule

        for k in range(1, MAX_CHORD + 1):
            self.add(f"CHORD{k}", chord(k, True))
            self.add(f"CHORD{k}O", chord(k, False))

        # The grace notes' own state (notes, accidentals, octaves; no lengths; '/' first).
        def grace_note(ch: str) -> Rule | None:
            if ch in NOTE_LETTERS:
                return Rule("GRACE")
            return Rule("GACC" + ch) if ch in ACCIDENTALS else None

        self.add("GRACE0", lambda ch: Rule("GRACE1") if ch == "/" else grace_note(ch))
        self.add("GRACE1", grace_note)
        self.add("GRACE", lambda ch: Rule("PRE") if ch == "}" else
                 (Rule("GRACEO") if ch in "',/" else grace_note(ch)))  # fmt: skip
        # After a grace note's octave mark or '/': another note or the end (no runs of digits).
        self.add("GRACEO", lambda ch: Rule("PRE") if ch == "}" else grace_note(ch))
        deco_chars = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<>().+-")
        self.add("DECO0", lambda ch: Rule("DECO") if ch in deco_chars else None)
        self.add("DECO", lambda ch: Rule("PRE") if ch == "!" else
                 (Rule("DECO") if ch in deco_chars else None))  # fmt: skip
        # A guitar chord starts with A-G, an annotation with a placement ^ _ < > @.
        self.add("Q0", lambda ch: Rule("G1") if ch in "ABCDEFG" else
                 (Rule("Q1") if ch in "^_<>@" else None))  # fmt: skip

        def quote(k: int, kind: str, chars: set[str]) -> Callable[[str], Rule | None]:
            def rule(ch: str) -> Rule | None:
                if ch == '"':
                    return Rule("PRE")
                return Rule(f"{kind}{k + 1}") if k < MAX_QUOTE and ch in chars else None

            return rule

        for k in range(1, MAX_QUOTE + 1):
            self.add(f"Q{k}", quote(k, "Q", QUOTE_CHARS))
            self.add(f"G{k}", quote(k, "G", CHORD_NAME_CHARS))

        def bar1(ch: str) -> Rule | None:
            """After '|': it may become '||', '|]', '|:', an ending '|1', or stay a bar."""
            if ch in "|]":
                return Rule("B_SEP", 0, A_SECTION)
            if ch == ":":
                return Rule("B_SEP", 0, A_REPOPEN)
            if ch in "12":
                return Rule("B_SEP", _bit(C_NOTNEED), A_SECTION)
            rule = self.sep(ch)
            if rule is None or ch in "|:":
                return None
            return Rule(rule.next, rule.cond | _bit(C_NOTNEED), rule.action)

        self.add("BAR1", bar1)
        self.add("COLON1", lambda ch: Rule("COLONBAR") if ch == "|" else
                 (Rule("B_SEP", 0, A_REPOPEN) if ch == ":" else None))  # fmt: skip

        def colon_bar(ch: str) -> Rule | None:
            """After ':|': ':|:', ':||', ':|]', ':|2' or the next bar."""
            if ch == ":":
                return Rule("B_SEP", 0, A_REPOPEN)
            if ch in "|]":
                return Rule("B_SEP", 0, A_SECTION)
            if ch in "12":
                return Rule("B_SEP", 0, A_SECTION)
            return None if ch in "|:" else self.sep(ch)

        self.add("COLONBAR", colon_bar)
        return self


@dataclass
class Tables:
    next: npt.NDArray[np.int16]  # [modes, V]: next mode, -1 = not allowed
    req: npt.NDArray[np.int32]  # [modes, V]: C_* bits required
    act: npt.NDArray[np.int8]  # [modes, V]
    commit: npt.NDArray[np.bool_]  # [modes, V]: the pending note ends first
    node: npt.NDArray[np.int16]  # [modes]: trie node of a pending note, -1 if none
    term: npt.NDArray[np.int16]  # [nodes + 1]: value index a node ends as, -1 if it cannot end
    child: npt.NDArray[np.int16]  # [nodes + 1, 11]: trie child per length char, last row: none
    comp: npt.NDArray[np.int64]  # [nodes + 1]: bitmask of values reachable from a node
    digit: npt.NDArray[np.int64]  # [V]: digit value of a char (0 otherwise)


def compile_tables(chars: Sequence[str]) -> tuple[Tables, list[str]]:
    g = _Grammar().build()
    modes = g.modes
    mid = {m: i for i, m in enumerate(modes)}
    n, v = len(modes), len(chars)
    nxt = np.full((n, v), -1, np.int16)
    req = np.zeros((n, v), np.int32)
    act = np.zeros((n, v), np.int8)
    commit = np.zeros((n, v), np.bool_)
    node = np.full(n, -1, np.int16)
    for m, name in enumerate(modes):
        pending = name.startswith("P:") or name.startswith("PN")
        if pending:
            node[m] = g.node_id[name[2:] if name.startswith("P:") else ""]
        rule_of = g.rules[name]
        for c, ch in enumerate(chars):
            rule = rule_of(ch)
            if rule is None:
                continue
            nxt[m, c] = mid[rule.next]
            req[m, c] = rule.cond
            act[m, c] = rule.action
            if pending and ch not in LENGTH_CHARS and ch not in "',":
                commit[m, c] = True
                req[m, c] |= _bit(C_TERM)
    nodes = g.nodes
    value_bit = {val: i for i, val in enumerate(VALUES)}
    term = np.full(len(nodes) + 1, -1, np.int16)
    child = np.full((len(nodes) + 1, len(LENGTH_CHARS)), len(nodes), np.int16)
    comp = np.zeros(len(nodes) + 1, np.int64)
    for i, s in enumerate(nodes):
        if s in SUFFIXES:
            term[i] = value_bit[SUFFIXES[s]]
        for k, ch in enumerate(LENGTH_CHARS):
            if s + ch in g.node_id:
                child[i, k] = g.node_id[s + ch]
        for suffix, val in SUFFIXES.items():
            if suffix.startswith(s):
                comp[i] |= 1 << value_bit[val]
    digit = np.asarray([int(ch) if ch in DIGITS else 0 for ch in chars], np.int64)
    return Tables(nxt, req, act, commit, node, term, child, comp, digit), modes


class BarTracker:
    """Vectorised over slots: `step` feeds one char per slot and returns the next chars' mask.

    State is an int32 array [B, FIELDS] that the caller carries (the sampler keeps it with the
    LSTM state, so slot refill, batch resizing and chunking need nothing special).
    """

    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = tuple(chars)
        self.t, self.modes = compile_tables(self.chars)
        self.mode_id = {m: i for i, m in enumerate(self.modes)}
        self.free = self.mode_id["FREE"]
        self._is_pending = self.t.node >= 0
        self._values = np.asarray(VALUES, np.int64)
        self._pow = np.int64(1) << np.arange(len(VALUES), dtype=np.int64)
        self._len_shift = np.int64(1) << (C_LEN + np.arange(len(LENGTH_CHARS), dtype=np.int64))
        self._len_shift32 = self._len_shift.astype(np.int32)
        self._tup_num = np.zeros(5, np.int64)
        self._tup_den = np.ones(5, np.int64)
        for r, (num, den) in TUPLETS.items():
            self._tup_num[r], self._tup_den[r] = num, den
        self.dead_ends = 0  # rows whose mask came out empty (the row went FREE)
        init = np.zeros(FIELDS, np.int32)
        init[MODE] = self.mode_id["H_START"]
        init[TARGET] = -1
        self.initial = init

    def initial_state(self, batch: int) -> npt.NDArray[np.int32]:
        return np.tile(self.initial, (batch, 1))

    # -- one step ----------------------------------------------------------------------------
    def step(
        self,
        state: npt.NDArray[np.int32],
        chars: npt.NDArray[np.int32],
        fresh: npt.NDArray[np.bool_],
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
        """Reset `fresh` rows, feed each row its char, return (new state, mask of next chars)."""
        s = np.array(state, np.int32, copy=True)
        if fresh.any():
            s[fresh] = self.initial
        self.feed(s, np.asarray(chars, np.int64))
        return s, self.mask(s)

    def feed(self, s: npt.NDArray[np.int32], c: npt.NDArray[np.int64]) -> None:
        """Advance every row of `s` (in place) by its char."""
        t = self.t
        mode = s[:, MODE].astype(np.int64)
        nxt = t.next[mode, c]
        act = t.act[mode, c]
        commit = t.commit[mode, c]
        if commit.any():
            rows = np.flatnonzero(commit)
            self._commit(s, rows, t.term[t.node[mode[rows]]].astype(np.int64))
        present = np.bincount(act.astype(np.intp), minlength=N_ACTIONS)
        for code in np.flatnonzero(present[1:]) + 1:
            self._act(s, np.flatnonzero(act == code), int(code), c)
        bad = nxt < 0
        nxt = np.where(bad, self.free, nxt)
        # an action may already have set FREE (an unfillable meter): keep it
        s[:, MODE] = np.where(s[:, MODE] == self.free, self.free, nxt)

    def _factor(
        self, s: npt.NDArray[np.int32], rows: npt.NDArray[np.intp] | slice
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        tupleft = s[rows, TUPLEFT]
        in_tup = tupleft > 0
        brk = s[rows, BRK]
        tupr = s[rows, TUPR]
        fnum = np.where(in_tup, self._tup_num[tupr], np.where(brk == 2, 3, 1))
        fden = np.where(in_tup, self._tup_den[tupr], np.where(brk > 0, 2, 1))
        return fnum, fden, in_tup

    def _commit(
        self, s: npt.NDArray[np.int32], rows: npt.NDArray[np.intp], val: npt.NDArray[np.int64]
    ) -> None:
        """The pending note of each row ends with length value index `val`."""
        fnum, fden, in_tup = self._factor(s, rows)
        val = np.maximum(val, 0)
        plain = s[rows, Q].astype(np.int64) * self._values[val]
        s[rows, POS] += (plain * fnum // fden).astype(np.int32)
        tupleft = s[rows, TUPLEFT]
        first = in_tup & (tupleft == s[rows, TUPR])
        left = np.where(in_tup, tupleft - 1, 0)
        target = np.where(first, val, s[rows, TARGET])
        s[rows, TARGET] = np.where(left > 0, target, -1)
        s[rows, TUPLEFT] = left
        s[rows, LASTPLAIN] = ~in_tup & (s[rows, BRK] == 0)
        s[rows, BRK] = 0
        s[rows, LASTQ] = plain
        s[rows, LASTV] = val

    def _act(
        self,
        s: npt.NDArray[np.int32],
        rows: npt.NDArray[np.intp],
        code: int,
        c: npt.NDArray[np.int64],
    ) -> None:
        if code in (A_CLOSE, A_CLOSE_COLON):
            pos = s[rows, POS]
            has = pos > 0
            if code == A_CLOSE:
                short = has & (pos < s[rows, BARLEN])
                pickok = s[rows, PICKOK] > 0
                s[rows, PICKUP] = np.where(short & pickok, pos, s[rows, PICKUP])
                s[rows, NEED] = short & ~pickok
                s[rows, PICKOK] = np.where(has, 0, s[rows, PICKOK])
            else:
                s[rows, PICKOK] = 1
                s[rows, OPENREP] = 0
                s[rows, NEED] = 0
            s[rows, BARS] += has
            # Full bars since the section began: a closing bar needs one before it.
            full = pos == s[rows, BARLEN]
            s[rows, FULLS] = 0 if code == A_CLOSE_COLON else s[rows, FULLS] + full
            s[rows, POS] = 0
        elif code in (A_SECTION, A_REPOPEN):
            s[rows, PICKOK] = 1
            s[rows, NEED] = 0
            s[rows, FULLS] = 0
            if code == A_REPOPEN:
                s[rows, OPENREP] = 1
        elif code in (A_TUP2, A_TUP3, A_TUP4):
            r = code - A_TUP2 + 2
            s[rows, TUPR] = r
            s[rows, TUPLEFT] = r
            s[rows, TARGET] = -1
        elif code in (A_GT, A_LT):
            half = s[rows, LASTQ] // 2
            s[rows, POS] += half if code == A_GT else -half
            s[rows, BRK] = 1 if code == A_GT else 2
            s[rows, TARGET] = s[rows, LASTV]
        elif code == A_ACC_RESET:
            s[rows, ACCN] = 0
            s[rows, ACCD] = 0
        elif code == A_NUM:
            s[rows, ACCN] = s[rows, ACCN] * 10 + self.t.digit[c[rows]]
        elif code == A_DEN:
            s[rows, ACCD] = s[rows, ACCD] * 10 + self.t.digit[c[rows]]
        elif code in (A_M_C, A_M_CC):
            s[rows, ACCN] = s[rows, ACCD] = 4 if code == A_M_C else 2
        elif code in (A_M_END, A_M_END_BODY):
            s[rows, MNUM] = s[rows, ACCN]
            s[rows, MDEN] = s[rows, ACCD]
            if code == A_M_END_BODY:
                self._bar_length(s, rows)
        elif code in (A_L_END, A_L_END_BODY):
            s[rows, UDEN] = s[rows, ACCD]
            if code == A_L_END_BODY:
                self._bar_length(s, rows)
        elif code == A_BODY_START:
            num, den = s[rows, MNUM], s[rows, MDEN]
            default = np.where(4 * num < 3 * den, 16, 8)  # the standard's default L
            s[rows, UDEN] = np.where(s[rows, UDEN] > 0, s[rows, UDEN], default)
            s[rows, PICKOK] = 1
            self._bar_length(s, rows)

    def _bar_length(self, s: npt.NDArray[np.int32], rows: npt.NDArray[np.intp]) -> None:
        """Bar and quarter-unit in ticks from meter and unit; FREE if the bar cannot be filled."""
        num, den, uden = s[rows, MNUM], s[rows, MDEN], s[rows, UDEN]
        ok = (den > 0) & (uden > 0) & (num > 0)
        den, uden = np.maximum(den, 1), np.maximum(uden, 1)
        barlen = TICKS_PER_WHOLE * num // den
        q = TICKS_PER_WHOLE // uden // 4
        ok &= (TICKS_PER_WHOLE * num % den == 0) & (barlen % np.maximum(q, 1) == 0) & (q % 12 == 0)
        s[rows, BARLEN] = barlen
        s[rows, Q] = q
        s[rows, MODE] = np.where(ok, s[rows, MODE], self.free)

    # -- the mask ----------------------------------------------------------------------------
    def _fits(
        self,
        pos: npt.NDArray[np.int64],
        barlen: npt.NDArray[np.int64],
        q: npt.NDArray[np.int64],
        tupleft: npt.NDArray[np.int64],
        tupr: npt.NDArray[np.int64],
        target: npt.NDArray[np.int64],
        brk: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.int64]:
        """Bitmask of the length values the next (or pending) note may take."""
        in_tup = tupleft > 0
        fnum = np.where(in_tup, self._tup_num[tupr], np.where(brk == 2, 3, 1))
        fden = np.where(in_tup, self._tup_den[tupr], np.where(brk > 0, 2, 1))
        group = np.where(in_tup & (tupleft == tupr), tupr, 1)
        need = (group * q * fnum)[:, None] * self._values[None, :]
        ok = need <= ((barlen - pos) * fden)[:, None]
        ok &= (target[:, None] < 0) | (target[:, None] == np.arange(len(VALUES))[None, :])
        bits: npt.NDArray[np.int64] = ok.astype(np.int64) @ self._pow
        return bits

    def mask(self, s: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
        t = self.t
        mode = s[:, MODE].astype(np.int64)
        col = s.astype(np.int64).T
        pos, barlen, q = col[POS], col[BARLEN], col[Q]
        tupleft, tupr, target, brk = col[TUPLEFT], col[TUPR], col[TARGET], col[BRK]
        node = t.node[mode].astype(np.int64)
        pending = node >= 0
        fits_now = self._fits(pos, barlen, q, tupleft, tupr, target, brk)
        term = t.term[np.where(pending, node, len(t.term) - 1)].astype(np.int64)
        term_ok = pending & (term >= 0) & ((fits_now >> np.maximum(term, 0)) & 1 > 0)
        lastq, lastplain = col[LASTQ], col[LASTPLAIN] > 0
        if term_ok.any():
            # What the state would be once the pending note ends: the next char is judged there.
            e = s.copy()
            rows = np.flatnonzero(term_ok)
            self._commit(e, rows, term[rows])
            ecol = e.astype(np.int64).T
            pos, tupleft, target, brk = ecol[POS], ecol[TUPLEFT], ecol[TARGET], ecol[BRK]
            lastq, lastplain = ecol[LASTQ], ecol[LASTPLAIN] > 0
        fits_next = self._fits(pos, barlen, q, tupleft, tupr, target, brk)
        free_of_groups = (tupleft == 0) & (brk == 0)
        rem = barlen - pos
        short = free_of_groups & (pos > 0) & (rem > 0)
        closing = (col[PICKUP] > 0) & (rem == col[PICKUP]) & (col[FULLS] > 0)
        at_start = (pos == 0) & free_of_groups
        ok = [
            term_ok,
            fits_next != 0,
            (rem == 0) | at_start | (short & ((col[PICKOK] > 0) | closing)),
            (rem == 0) | at_start | (short & closing),
            col[NEED] == 0,
            at_start & (col[BARS] >= 2) & (col[OPENREP] == 0) & (col[NEED] == 0),
            pos == 0,
        ]
        for r in (2, 3, 4):
            num, den = TUPLETS[r]
            ok.append(free_of_groups & (r * q * num <= rem * den))
        ok.append(term_ok & lastplain & (pos + lastq <= barlen))
        ok.append(col[MDEN] > 0)
        bits = np.zeros(len(mode), np.int64)
        for i, cond in enumerate(ok):
            bits |= cond.astype(np.int64) << i
        # Length chars: the child node must still reach a length that fits.
        child = t.child[np.where(pending, node, len(t.term) - 1)]  # [B, 11]
        len_ok = (t.comp[child] & fits_now[:, None]) != 0
        bits |= (len_ok.astype(np.int64) * self._len_shift).sum(axis=1)
        bits32 = bits.astype(np.int32)
        allowed = (t.next[mode] >= 0) & ((t.req[mode] & ~bits32[:, None]) == 0)
        empty = ~allowed.any(axis=1)
        if empty.any():
            self.dead_ends += int(empty.sum())
            s[empty, MODE] = self.free
            allowed[empty] = True
        return allowed  # type: ignore[no-any-return]

    # -- for tests and tools -----------------------------------------------------------------
    def mode_name(self, state_row: npt.NDArray[np.int32]) -> str:
        return self.modes[int(state_row[MODE])]
