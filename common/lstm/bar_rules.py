"""The notation the bar tracker lets the sampler write, as readable rules over one char at a time.

Each *mode* (header field, note with its length suffix, chord, grace notes, decoration, barline,
...) maps a char to a `Rule`: the next mode, the conditions on the slot's counters it needs
(`Cond` bits, checked per row by `common.lstm.bar_tracker`), the counter update it triggers
(`A_*`) and what it says about the note being written (`EV_*`: its spelling, decorations, ties).
A char without a rule is never written. The subset is what abc2midi reads without an ``Error``:

* header: ``X:`` with a number, then only the fields abc2midi accepts in a header; ``M:`` and
  ``L:`` once each (a second would be read by some checkers and not others) with values it can
  count; ``K:`` a tonic with an optional sharp/flat and a mode it knows;
* a tie ``-`` only after an undecorated note (not a rest or chord; abc2midi finds no note
  before ``.A-``); the next note is checked by the tracker;
* broken rhythm ``>``/``<`` only between undecorated notes (abc2midi cannot apply it otherwise);
* after a decoration a note (no slur, grace or chord: abc2midi reads ``~(`` as a bad note), and
  no ``!name!`` after a one-char decoration (``~!f!A`` is a bad note too);
* at most `MAX_GRACE` grace notes in a group, and a note (not another group) after it;
* repeats and endings in the shape abc2midi pairs (``|1`` inside a repeat, closed by ``:|``,
  ``|2`` right after it, ``::`` only where a repeat is open): the tracker checks them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

#: Ticks per whole note: divisible by every duration the tracker allows (unit down to 1/32,
#: lengths down to 1/4 of it, tuplet factors 2/3 and 3/4, broken halves).
TICKS_PER_WHOLE = 1536

NOTE_LETTERS = "ABCDEFGabcdefg"
RESTS = "zx"
LENGTH_CHARS = "0123456789/"
DIGITS = "0123456789"
ACCIDENTALS = "^_="
#: Accidental spellings by code (0: none); a double accidental's code is its single one's + 1.
ACC_SPELLING = ("", "^", "^^", "_", "__", "=")
ACC_CODE = {"^": 1, "_": 3, "=": 5}
#: One-char decorations before a note: staccato, roll, trill, up/down bow (no fermata: abc2midi
#: holds the note longer than written, and the bar comes out long).
DECORATIONS = ".~Tuv"
#: Notes in a chord or grace group, chars in a guitar chord or annotation, and the chars it may
#: hold: short and without barlines, so that a stray quote or bracket cannot swallow the music.
MAX_CHORD = 4
MAX_GRACE = 4
MAX_QUOTE = 10
QUOTE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789#/()+-. ")
#: Guitar chord names abc2midi knows (root, accidental, quality), and !decorations! it plays.
CHORD_NAMES = tuple(
    root + acc + quality
    for root in "ABCDEFG"
    for acc in ("", "#", "b")
    for quality in ("", "m", "7", "m7", "maj7", "dim", "aug", "6", "m6", "9", "sus4")
)
DECORATION_NAMES = (
    "trill", "roll", "accent", "emphasis", "mordent", "turn", "upbow", "downbow",
    "tenuto", "breath", "p", "pp", "mp", "mf", "f", "ff",
)  # fmt: skip
#: Header fields besides X (first), M, L and K (last): free text that abc2midi accepts there.
HEADER_FIELDS = "TRCOSNZBDH"
#: Field lines the body may hold at a bar start (``K:``, ``M:``, ``L:`` are read; others skipped).
BODY_FIELDS = "KLMT"
#: What may follow a key's tonic (and its optional # or b): the modes abc2midi knows.
KEY_MODES = ("", "m", "min", "maj", "mix", "dor", "phr", "lyd", "loc", "aeo", "ion")
KEY_SUFFIXES = sorted(
    {a + m for a in ("", "#", "b") for mode in KEY_MODES for m in (mode, mode.capitalize())}
)

#: Length suffixes a note may carry, as multiples of a quarter of the unit length.
SUFFIXES: dict[str, int] = {
    "": 4, "2": 8, "3": 12, "4": 16, "5": 20, "6": 24, "7": 28, "8": 32, "12": 48, "16": 64,
    "/": 2, "//": 1, "/2": 2, "/4": 1, "3/": 6, "3/2": 6, "3/4": 3,
}  # fmt: skip
VALUES = sorted(set(SUFFIXES.values()))  # distinct lengths, indexed by bit
#: Tuplet (r: r notes) factors: (2 → 3/2, (3 → 2/3, (4 → 3/4 of their written length.
TUPLETS = {2: (3, 2), 3: (2, 3), 4: (3, 4)}


class Cond(IntEnum):
    """Conditions on a slot's counters that a (mode, char) may require, one bit each in
    `common.lstm.bar_tables.Tables.req`. Named, so that the tracker answers each by name (and
    `common.lstm.bar_tables.check_coverage` can tell a condition nobody answers); the table's
    integer width follows from how many there are."""

    TERM = 0  # the pending note may end here
    NOTE = 1  # a note (rest, chord) fits in the bar
    BAR = 2  # a barline may close the bar
    COLON = 3  # ':' may start ':|'
    NOTNEED = 4  # no short bar is waiting to end its section
    END = 5  # the tune may end
    BARSTART = 6  # at a bar's start (fields, endings)
    TUP2 = 7  # a tuplet (2 fits
    TUP3 = 8
    TUP4 = 9
    BROKEN = 10  # broken rhythm after the last note fits
    METER = 11  # M: came (K: may end the header)
    TIE = 12  # the last note is plain, so it may be tied
    REPOPEN = 13  # '|:' may open a repeat
    END1 = 14  # a first ending may start
    END2 = 15  # a second ending may start
    SECTION = 16  # '||' or '|]' may end a section
    REOPEN = 17  # '::' or ':|:' may reopen
    NOMETER = 18  # no M: yet
    NOUNIT = 19  # no L: yet
    # Length char i of LENGTH_CHARS ("0123456789/") may extend the pending note's suffix.
    LEN_0 = 20
    LEN_1 = 21
    LEN_2 = 22
    LEN_3 = 23
    LEN_4 = 24
    LEN_5 = 25
    LEN_6 = 26
    LEN_7 = 27
    LEN_8 = 28
    LEN_9 = 29
    LEN_SLASH = 30


#: The length-char conditions, in `LENGTH_CHARS` order (the tracker answers them as one block).
LENGTHS = tuple(Cond(Cond.LEN_0 + i) for i in range(len(LENGTH_CHARS)))
if len(Cond) > 63:  # int64 is the widest table; a 64th condition needs another layout
    raise RuntimeError(f"{len(Cond)} bar tracker conditions do not fit an int64 table")

# Actions of a (mode, char); COMMIT (the pending note ends first) is a separate table.
(A_NONE, A_CLOSE, A_CLOSE_COLON, A_SECTION, A_REPOPEN, A_TUP2, A_TUP3, A_TUP4, A_GT, A_LT,
 A_ACC_RESET, A_NUM, A_DEN, A_M_C, A_M_CC, A_M_END, A_L_END, A_BODY_START, A_M_END_BODY,
 A_L_END_BODY, A_END1, A_END2) = range(22)  # fmt: skip
N_ACTIONS = 22

# What a char says about the note being written (its spelling is what a tie must repeat).
(EV_NONE, EV_ACC, EV_ACC2, EV_LET, EV_LETA, EV_OCT, EV_NOPITCH, EV_DECO, EV_TIE) = range(9)


def _note_mode(letter: str) -> str:
    """A pending note: C, takes ',' octave marks, c' takes "'" (abc2midi refuses the others)."""
    return "PNU" if letter.isupper() else "PNL"


def _chord_mode(k: int, letter: str) -> str:
    """After the k-th note of a chord: its case decides the octave mark it may take."""
    return f"CHORD{k}{'U' if letter.isupper() else 'L'}"


@dataclass(frozen=True)
class Rule:
    next: str
    cond: int = 0  # bitmask of `Cond` bits
    action: int = A_NONE
    event: int = EV_NONE


def bit(*conds: int) -> int:
    out = 0
    for c in conds:
        out |= 1 << c
    return out


def _trie() -> tuple[list[str], dict[str, int]]:
    nodes = sorted({s[:i] for s in SUFFIXES for i in range(len(s) + 1)}, key=lambda s: (len(s), s))
    return nodes, {s: i for i, s in enumerate(nodes)}


class Grammar:
    """The automaton as readable rules; `common.lstm.bar_tables.build_grammar` puts the header's
    (`common.lstm.bar_fields`) and the body's together, `BarTracker` compiles them to tables."""

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
            "|": Rule("BAR1", bit(Cond.BAR), A_CLOSE),
            ":": Rule("COLON1", bit(Cond.COLON), A_CLOSE_COLON),
        }.get(ch)

    def note_start(self, ch: str) -> Rule | None:
        """The first char of a note or rest: a pitch letter, a rest or an accidental."""
        if ch in NOTE_LETTERS:
            return Rule(_note_mode(ch), bit(Cond.NOTE), event=EV_LET)
        if ch in RESTS:
            return Rule("P:", bit(Cond.NOTE), event=EV_NOPITCH)
        if ch in ACCIDENTALS:
            return Rule("ACC" + ch, bit(Cond.NOTE), event=EV_ACC)
        return None

    def decoration(self, ch: str) -> Rule | None:
        if ch in DECORATIONS:
            return Rule("PRED", bit(Cond.NOTE), event=EV_DECO)
        if ch == "!":
            return Rule("DECO0", bit(Cond.NOTE), event=EV_DECO)
        return None

    def pre_note(self, ch: str) -> Rule | None:
        """Things that lead to a note and take no time: the note must fit."""
        return self.decoration(ch) or {
            "{": Rule("GRACE0", bit(Cond.NOTE)),
            "(": Rule("PAREN", bit(Cond.NOTE)),
            '"': Rule("Q0", bit(Cond.NOTE)),
        }.get(ch)

    def pre(self, ch: str) -> Rule | None:
        """After a slur, tuplet or guitar chord: a note comes next."""
        start = self.note_start(ch)
        if start is not None:
            return start
        if ch == "[":
            return Rule("CHORD0", bit(Cond.NOTE), event=EV_NOPITCH)
        return self.pre_note(ch)

    def after_note(self, ch: str) -> Rule | None:
        """After a note's length is complete (the note is committed first)."""
        extra = {
            "-": Rule("B_SEP", bit(Cond.TIE), event=EV_TIE),
            ">": Rule("PREB", bit(Cond.BROKEN), A_GT),
            "<": Rule("PREB", bit(Cond.BROKEN), A_LT),
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
                after = f"PN{'U' if marks == ',' else 'L'}1" if octave == 0 else "P:"
                return Rule(after, event=EV_OCT)
            if ch in LENGTH_CHARS:
                child = node + ch
                if child in trie:
                    return Rule(f"P:{child}", bit(LENGTHS[LENGTH_CHARS.index(ch)]))
                return None
            return self.after_note(ch)

        return rule

    def words(self, mode: str, words: tuple[str, ...], end: str, done: Rule) -> None:
        """From `mode`, one of `words` then `end` (a trie of modes named after `mode`)."""
        prefixes = {w[:i] for w in words for i in range(len(w) + 1)}
        for node in prefixes:

            def rule(ch: str, node: str = node) -> Rule | None:
                if ch == end and node in words:
                    return done
                return Rule(f"{mode}:{node}{ch}") if node + ch in prefixes else None

            self.add(mode if node == "" else f"{mode}:{node}", rule)

    def add(self, mode: str, rule: Callable[[str], Rule | None]) -> None:
        if mode not in self.modes:
            self.modes.append(mode)
        self.rules[mode] = rule

    def accidentals(self, prefix: str, then: Callable[[str], str]) -> None:
        """``^``, ``^^``, ``_``, ``__``, ``=`` before a note letter, in body, chord or grace;
        `then` names the mode a letter leads to. Only body notes (prefix ACC) report events."""
        body = prefix == "ACC"
        letter_ev, double_ev = (EV_LETA, EV_ACC2) if body else (EV_NONE, EV_NONE)

        def letter(ch: str) -> Rule | None:
            return Rule(then(ch), event=letter_ev) if ch in NOTE_LETTERS else None

        for acc in ACCIDENTALS:

            def rule(ch: str, acc: str = acc) -> Rule | None:
                if ch == acc and acc != "=":
                    return Rule(prefix + "D", event=double_ev)
                return letter(ch)

            self.add(prefix + acc, rule)
        self.add(prefix + "D", letter)

    # -- the body ----------------------------------------------------------------------------
    def build_body(self) -> None:
        self.add("B_SEP", self.sep)
        # A continued line goes on at a line start: there too a blank line or X ends the tune,
        # which only a closed bar allows (the sampler stops at any blank line).
        self.add("CONT", lambda ch: Rule("B_LSC") if ch == "\n" else None)

        def continued(ch: str) -> Rule | None:
            if ch in ("\n", "X"):
                return Rule("FREE", bit(Cond.END))
            return self.sep(ch)  # no field line inside a continued line

        self.add("B_LSC", continued)
        self.add("PRE", self.pre)
        # After a one-char decoration: a note, or another one-char decoration (abc2midi reads
        # ``~!f!A`` as a malformed note); after a ``!name!`` one: a note, or any decoration.
        self.add(
            "PRED",
            lambda ch: self.note_start(ch) or (self.decoration(ch) if ch != "!" else None),
        )
        self.add("PREDN", lambda ch: self.note_start(ch) or self.decoration(ch))
        # After > or <: an undecorated note, maybe with grace notes, guitar chord or slur.
        self.add("PREB", lambda ch: None if ch in DECORATIONS or ch == "!" else self.pre(ch))
        # After grace notes: a note or chord (a slur could lead to another group).
        chord = Rule("CHORD0", bit(Cond.NOTE), event=EV_NOPITCH)
        self.add("PREG", lambda ch: self.note_start(ch) or (chord if ch == "[" else None))

        def paren(ch: str) -> Rule | None:
            if ch in "234":
                r = int(ch)
                return Rule(
                    "PRE",
                    bit((Cond.TUP2, Cond.TUP3, Cond.TUP4)[r - 2]),
                    (A_TUP2, A_TUP3, A_TUP4)[r - 2],
                )
            return self.pre(ch)

        self.add("PAREN", paren)
        self.add("PNU", self.pending("", 0, ","))
        self.add("PNU1", self.pending("", 1, ","))
        self.add("PNL", self.pending("", 0, "'"))
        self.add("PNL1", self.pending("", 1, "'"))
        for node in self.nodes:
            self.add(f"P:{node}", self.pending(node, None))
        self.accidentals("ACC", _note_mode)
        for k in range(1, MAX_CHORD + 1):
            self.accidentals(f"CACC{k}", lambda ch, k=k: _chord_mode(k, ch))  # type: ignore[misc]
        self.build_groups()
        self.build_barlines()

    def build_groups(self) -> None:
        """Chords, grace notes, decorations and quoted text."""

        def lbrack(ch: str) -> Rule | None:
            if ch in NOTE_LETTERS:
                return Rule(_chord_mode(1, ch), bit(Cond.NOTE), event=EV_NOPITCH)
            if ch in ACCIDENTALS:
                return Rule("CACC1" + ch, bit(Cond.NOTE), event=EV_NOPITCH)
            if ch in "ML":
                return Rule("IFF" + ch, bit(Cond.BARSTART))
            if ch == "K":
                return Rule("IFFK")
            if ch == "1":
                return Rule("B_SEP", bit(Cond.BARSTART, Cond.END1), A_END1)  # an ending [1
            if ch == "2":
                return Rule("B_SEP", bit(Cond.BARSTART, Cond.END2), A_END2)
            return None

        self.add("LBRACK", lbrack)
        # After '[' in a PRE context: only a chord.
        self.add("CHORD0", lambda ch: Rule(_chord_mode(1, ch)) if ch in NOTE_LETTERS else
                 (Rule("CACC1" + ch) if ch in ACCIDENTALS else None))  # fmt: skip

        def chord(k: int, marks: str) -> Callable[[str], Rule | None]:
            """After the k-th note of a chord (notes carry no length: the chord's comes after ]);
            one octave mark of its case (`marks`) per note at most."""

            def rule(ch: str) -> Rule | None:
                if ch in "',":
                    return Rule(f"CHORD{k}O") if ch in marks else None
                if k < MAX_CHORD and ch in NOTE_LETTERS:
                    return Rule(_chord_mode(k + 1, ch))
                if k < MAX_CHORD and ch in ACCIDENTALS:
                    return Rule(f"CACC{k + 1}" + ch)
                return Rule("P:") if ch == "]" else None

            return rule

        for k in range(1, MAX_CHORD + 1):
            self.add(f"CHORD{k}U", chord(k, ","))
            self.add(f"CHORD{k}L", chord(k, "'"))
            self.add(f"CHORD{k}O", chord(k, ""))

        # Grace notes: notes, accidentals, one octave mark of the note's case or '/' each, no
        # lengths; '/' first.
        def case(k: int, letter: str) -> str:
            return f"GRACE{k}{'U' if letter.isupper() else 'L'}"

        def grace_note(k: int) -> Callable[[str], Rule | None]:
            """The (k+1)-th grace note may start here (none past MAX_GRACE)."""

            def rule(ch: str) -> Rule | None:
                if k >= MAX_GRACE:
                    return None
                if ch in NOTE_LETTERS:
                    return Rule(case(k + 1, ch))
                return Rule(f"GACC{k + 1}" + ch) if ch in ACCIDENTALS else None

            return rule

        def after_grace(k: int, marks: str) -> Callable[[str], Rule | None]:
            def rule(ch: str) -> Rule | None:
                if ch == "}":
                    return Rule("PREG")
                return Rule(f"GRACEO{k}") if ch in marks else grace_note(k)(ch)

            return rule

        self.add("GRACE0", lambda ch: Rule("GRACES") if ch == "/" else grace_note(0)(ch))
        self.add("GRACES", grace_note(0))
        for k in range(1, MAX_GRACE + 1):
            self.accidentals(f"GACC{k}", lambda ch, k=k: case(k, ch))  # type: ignore[misc]
            self.add(f"GRACE{k}U", after_grace(k, ",/"))
            self.add(f"GRACE{k}L", after_grace(k, "'/"))
            self.add(f"GRACEO{k}", after_grace(k, ""))
        self.words("DECO0", DECORATION_NAMES, "!", Rule("PREDN"))
        # A guitar chord is a name from CHORD_NAMES, an annotation starts with ^ _ < > @.
        self.words("Q0", CHORD_NAMES, '"', Rule("PRE"))
        gchord = self.rules["Q0"]
        self.add("Q0", lambda ch: Rule("Q1") if ch in "^_<>@" else gchord(ch))

        def quote(k: int, kind: str, chars: set[str]) -> Callable[[str], Rule | None]:
            def rule(ch: str) -> Rule | None:
                if ch == '"':
                    return Rule("PRE")
                return Rule(f"{kind}{k + 1}") if k < MAX_QUOTE and ch in chars else None

            return rule

        for k in range(1, MAX_QUOTE + 1):
            self.add(f"Q{k}", quote(k, "Q", QUOTE_CHARS))

    def build_barlines(self) -> None:
        """Barlines, repeats and endings; the conditions keep the pairs abc2midi expects."""

        def bar1(ch: str) -> Rule | None:
            """After '|': it may become '||', '|]', '|:', an ending '|1', or stay a bar."""
            if ch in "|]":
                return Rule("B_SEP", bit(Cond.SECTION), A_SECTION)
            if ch == ":":
                return Rule("B_SEPC", bit(Cond.REPOPEN), A_REPOPEN)
            if ch == "1":
                return Rule("B_SEP", bit(Cond.NOTNEED, Cond.END1), A_END1)
            if ch == "2":
                return Rule("B_SEP", bit(Cond.NOTNEED, Cond.END2), A_END2)
            rule = self.sep(ch)
            if rule is None or ch in "|:":
                return None
            return Rule(rule.next, rule.cond | bit(Cond.NOTNEED), rule.action, rule.event)

        self.add("BAR1", bar1)
        self.add("COLON1", lambda ch: Rule("COLONBAR") if ch == "|" else
                 (Rule("B_SEPC", bit(Cond.REOPEN), A_REPOPEN) if ch == ":" else None))  # fmt: skip

        def colon_bar(ch: str) -> Rule | None:
            """After ':|': ':|:', ':||', ':|]', ':|2' or the next bar."""
            if ch == ":":
                return Rule("B_SEPC", bit(Cond.REOPEN), A_REPOPEN)
            if ch in "|]":
                return Rule("B_SEPC", 0, A_SECTION)
            if ch == "2":
                return Rule("B_SEP", bit(Cond.END2), A_END2)
            return None if ch in "|:1" else self.sep(ch)

        self.add("COLONBAR", colon_bar)
        # Right after ':||', ':|]' or a repeat's opening ('|:', '::', ':|:'), no barline: abc2midi
        # splits runs like ':|||:' or '|:::' its own way, then reports "found :: before |:" or
        # "found another |: after a |:" (a note or a line break may come first).
        self.add("B_SEPC", lambda ch: None if ch in "|:" else self.sep(ch))
