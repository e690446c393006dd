"""The bar tracker's tables: `common.lstm.bar_rules` compiled over one vocabulary.

Per (mode, char): the next mode, the conditions, the action, the event, whether the pending note
ends first, and whether a waiting tie forbids it; per pending mode the length-suffix trie node;
per spelling code the chars that write it (what a tie's continuation must repeat).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from common.lstm.bar_fields import build_fields
from common.lstm.bar_rules import (
    A_CLOSE,
    A_CLOSE_COLON,
    A_END1,
    A_END2,
    A_REPOPEN,
    A_SECTION,
    ACC_CODE,
    ACC_SPELLING,
    DIGITS,
    LENGTH_CHARS,
    NOTE_LETTERS,
    RESTS,
    SUFFIXES,
    VALUES,
    Cond,
    Grammar,
    Rule,
    bit,
)

#: The narrowest integer that holds a bit per condition: int32 while they fit (the mask's
#: AND then moves half the bytes), int64 beyond; `common.lstm.bar_rules` refuses a 64th.
REQ_DTYPE: type[np.signedinteger[Any]] = np.int32 if len(Cond) <= 31 else np.int64
#: Actions that write a barline (close a bar, a section, open a repeat or an ending).
BARLINE_ACTIONS = (A_CLOSE, A_CLOSE_COLON, A_SECTION, A_REPOPEN, A_END1, A_END2)
#: Conditions of what takes time: a note, rest, chord or group (NOTE), a tuplet, a broken pair.
TIMED = bit(Cond.NOTE, Cond.TUP2, Cond.TUP3, Cond.TUP4, Cond.BROKEN)

#: A spelling code: accidental * 42 + letter * 3 + octave marks.
N_SPELLINGS = len(ACC_SPELLING) * len(NOTE_LETTERS) * 3
SPELL_END = -2


@dataclass
class Tables:
    next: npt.NDArray[np.int16]  # [modes, V]: next mode, -1 = not allowed
    req: npt.NDArray[np.signedinteger[Any]]  # [modes, V]: `Cond` bits required (`REQ_DTYPE`)
    act: npt.NDArray[np.int8]  # [modes, V]
    event: npt.NDArray[np.int8]  # [modes, V]: EV_* the char reports about the note
    commit: npt.NDArray[np.bool_]  # [modes, V]: the pending note ends first
    tieban: npt.NDArray[np.bool_]  # [modes, V]: starts a note, group, field or the end
    node: npt.NDArray[np.int16]  # [modes]: trie node of a pending note, -1 if none
    term: npt.NDArray[np.int16]  # [nodes + 1]: value index a node ends as, -1 if it cannot end
    child: npt.NDArray[np.int16]  # [nodes + 1, 11]: trie child per length char, last row: none
    comp: npt.NDArray[np.int64]  # [nodes + 1]: bitmask of values reachable from a node
    digit: npt.NDArray[np.int64]  # [V]: digit value of a char (0 otherwise)
    letter: npt.NDArray[np.int32]  # [V]: index in NOTE_LETTERS (0 otherwise)
    acc: npt.NDArray[np.int32]  # [V]: accidental code of ^ _ = (0 otherwise)
    spell: npt.NDArray[np.int64]  # [N_SPELLINGS, 6]: chars of a spelling, then SPELL_END
    timed: npt.NDArray[np.bool_]  # [modes, V]: starts something that takes time (see below)
    barline: npt.NDArray[np.bool_]  # [modes, V]: a barline's action (bar, section, ending)


#: Where a tied note's continuation must not go before it is written: another note or rest,
#: a chord, grace notes, a field (a key change), the tune's end; and no roll or trill (``~``,
#: ``T``, nor any ``!name!``): abc2midi plays those as several notes and then finds none to tie
#: to (``c-|~c`` always, ``{^c}E c-|Tc`` after a grace note's accidental).
_TIE_BANNED = {"PNU", "PNL", "LBRACK", "CHORD0", "CHORD1U", "CHORD1L", "GRACE0", "LST"}


def _tie_banned(mode: str, ch: str, nxt: str, cond: int) -> bool:
    if mode == "FREE":
        return False
    return (
        nxt in _TIE_BANNED
        or nxt.startswith(("ACC", "CACC", "BFF", "IFF"))
        or (ch in RESTS and nxt == "P:")
        or (ch in ",'" and mode.startswith("PN"))
        or (ch in "~T" and nxt == "PRED")
        or nxt == "DECO0"
        or bool(cond & bit(Cond.END))
    )


def _spellings(chars: Sequence[str]) -> npt.NDArray[np.int64]:
    index = {ch: i for i, ch in enumerate(chars)}
    out = np.full((N_SPELLINGS, 6), SPELL_END, np.int64)
    for a, acc in enumerate(ACC_SPELLING):
        for li, letter in enumerate(NOTE_LETTERS):
            for octave in range(3):
                text = acc + letter + ("," if letter.isupper() else "'") * octave
                ids = [index.get(ch, -1) for ch in text]
                out[(a * len(NOTE_LETTERS) + li) * 3 + octave, : len(ids)] = ids
    return out


def _prune_dead_ends(nxt: npt.NDArray[np.int16]) -> None:
    """Remove, in place, every move into a mode that the model's chars cannot leave.

    The rules are written over all of printable ASCII, but a model knows only its corpus's
    chars: one trained without ``j`` can start ``K:AMa`` on the way to ``Maj`` and then find no
    char the key allows. Its mask would come out empty, the slot would go untracked and the
    tune end as abc2midi's "Unknown mode 'Ma'". Taking out the moves into such modes, until
    none is left, means a prefix is offered only if the model can finish it. (A dead end that
    depends on the counters, not on the chars, is the tracker's to avoid at run time.)
    """
    while True:
        dead: npt.NDArray[np.bool_] = ~np.any(nxt >= 0, axis=1)
        into = (nxt >= 0) & dead[np.maximum(nxt, 0)]
        if not into.any():
            return
        nxt[into] = -1


def build_grammar() -> Grammar:
    """The whole automaton: FREE, the header and field lines, then the body (this order fixes
    the modes' ids)."""
    g = Grammar()
    g.add("FREE", lambda ch: Rule("FREE"))
    build_fields(g)
    g.build_body()
    return g


def check_coverage(answered: Sequence[Cond]) -> None:
    """Every condition a rule can require is answered by exactly one checker: a rule whose
    condition nobody answered would be allowed or refused by accident of the bits' defaults."""
    missing = sorted(set(Cond) - set(answered))
    twice = sorted({c for c in answered if list(answered).count(c) > 1})
    if missing or twice:
        raise RuntimeError(
            f"bar tracker conditions not answered: {[c.name for c in missing]}, answered more "
            f"than once: {[c.name for c in twice]}; answer each in one part's `conditions`"
        )


def compile_tables(chars: Sequence[str]) -> tuple[Tables, list[str]]:
    g = build_grammar()
    modes = g.modes
    mid = {m: i for i, m in enumerate(modes)}
    n, v = len(modes), len(chars)
    nxt = np.full((n, v), -1, np.int16)
    req = np.zeros((n, v), REQ_DTYPE)
    act = np.zeros((n, v), np.int8)
    event = np.zeros((n, v), np.int8)
    commit = np.zeros((n, v), np.bool_)
    tieban = np.zeros((n, v), np.bool_)
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
            event[m, c] = rule.event
            tieban[m, c] = _tie_banned(name, ch, rule.next, rule.cond)
            if pending and ch not in LENGTH_CHARS and ch not in "',":
                commit[m, c] = True
                req[m, c] |= bit(Cond.TERM)
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
    _prune_dead_ends(nxt)
    digit = np.asarray([int(ch) if ch in DIGITS else 0 for ch in chars], np.int64)
    letter = np.asarray([max(NOTE_LETTERS.find(ch), 0) for ch in chars], np.int32)
    acc = np.asarray([ACC_CODE.get(ch, 0) for ch in chars], np.int32)
    unknown = int(np.bitwise_or.reduce(req.astype(np.int64), axis=None)) >> len(Cond)
    if unknown:
        raise RuntimeError(
            f"a bar rule requires a condition bit past `Cond`: {unknown << len(Cond):#x}"
        )
    # What takes time in the bar (a bar's text starts there, the final unit bans its start).
    timed = ((req & TIMED) != 0) & (nxt >= 0)
    barline = np.isin(act, BARLINE_ACTIONS)
    tables = Tables(
        nxt, req, act, event, commit, tieban, node, term, child, comp, digit, letter, acc,
        _spellings(chars), timed, barline,
    )  # fmt: skip
    return tables, modes
