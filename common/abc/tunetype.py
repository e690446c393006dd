"""A tune's type (reel, jig, slip jig, hornpipe, polka, ...) from its ``R:`` field, checked
against its meter, and the tempo that type is played at.

Folk tune types are dances before they are names: a reel is in 4/4 (or 2/2), a jig in 6/8, a
slip jig in 9/8, a slide in 12/8, a polka in 2/4, a waltz in 3/4. An ``R:`` that says "reel" over
a 6/8 meter is a label the music contradicts, so the type is taken only when the meter is one
the type is written in (`TuneType.checked` keeps the other case visible for the page). Types
with no fixed meter (air, march, set dance) are taken from ``R:`` as they are.

The tempos are the moderate session tempos of each type as ABC ``Q:`` fields (a reel's beat is
the half note, a jig's the dotted quarter): a player's "100 %" in the gallery, which slows them
down from there. Neither the sampler nor the corpus writes ``Q:`` to most tunes, and abc2midi's
default (120 quarter notes a minute) plays a reel like a march and an air like a reel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.abc.notation import header_fields


@dataclass(frozen=True)
class TypeRule:
    name: str
    meters: frozenset[str]  # empty: any meter
    tempo: str  # the Q: field's value, e.g. "1/2=100"


def _rule(name: str, meters: str, tempo: str) -> TypeRule:
    return TypeRule(name, frozenset(meters.split()), tempo)


#: The types a musician looks a tune up by, with the meters they are written in and their tempo.
RULES: dict[str, TypeRule] = {
    rule.name: rule
    for rule in (
        _rule("reel", "4/4 2/2 C C|", "1/2=100"),
        _rule("jig", "6/8", "3/8=112"),
        _rule("slip jig", "9/8", "3/8=120"),
        _rule("hop jig", "9/8", "3/8=120"),
        _rule("slide", "12/8", "3/8=144"),
        _rule("hornpipe", "4/4 2/2 C C|", "1/4=150"),
        _rule("barndance", "4/4 2/2 C C|", "1/4=160"),
        _rule("strathspey", "4/4 C", "1/4=120"),
        _rule("polka", "2/4", "1/4=130"),
        _rule("waltz", "3/4", "1/4=150"),
        _rule("mazurka", "3/4", "1/4=140"),
        _rule("march", "", "1/4=110"),
        _rule("set dance", "", "1/4=130"),
        _rule("air", "", "1/4=70"),
    )
}

#: Other spellings of the same types, as they appear in ``R:`` fields of tune collections.
SYNONYMS = {
    "double jig": "jig",
    "single jig": "jig",
    "jigs": "jig",
    "reels": "reel",
    "slipjig": "slip jig",
    "slip-jig": "slip jig",
    "hop-jig": "hop jig",
    "barn dance": "barndance",
    "barn-dance": "barndance",
    "schottische": "barndance",
    "hornpipes": "hornpipe",
    "slow air": "air",
    "long dance": "set dance",
    "set-dance": "set dance",
    "valse": "waltz",
}


@dataclass(frozen=True)
class TuneType:
    """``name`` is the type when ``checked`` (``R:`` agrees with the meter); otherwise it is what
    ``R:`` said, kept so the page can show the disagreement."""

    name: str
    checked: bool
    tempo: str | None

    @property
    def label(self) -> str:
        return self.name if self.checked else f"{self.name}? (R: against the meter)"


def normalise(rhythm: str) -> str:
    """The type an ``R:`` value names: lower case, single spaces, synonyms folded."""
    text = re.sub(r"[\s_]+", " ", rhythm.strip().lower()).strip(" .")
    return SYNONYMS.get(text, text)


def _meter(meter: str) -> str:
    return meter.replace(" ", "")


def tune_type(rhythm: str, meter: str) -> TuneType | None:
    """The type of a tune with this ``R:`` and ``M:``; None when ``R:`` is empty."""
    name = normalise(rhythm)
    if not name:
        return None
    rule = RULES.get(name)
    if rule is None:
        return TuneType(name, checked=True, tempo=None)  # a type we have no rule for
    ok = not rule.meters or _meter(meter) in rule.meters
    return TuneType(name, checked=ok, tempo=rule.tempo if ok else None)


def type_of(tune: str) -> TuneType | None:
    """The type of an ABC tune, read from its header."""
    fields = header_fields(tune)
    return tune_type(fields.get("R", ""), fields.get("M", ""))


_K_LINE = re.compile(r"^K:", re.MULTILINE)


def with_tempo(tune: str) -> str:
    """The tune with its type's ``Q:`` added before ``K:`` when it has none of its own.

    For the synthesiser only: the stored ABC stays as the model wrote it.
    """
    fields = header_fields(tune)
    if "Q" in fields:
        return tune
    kind = tune_type(fields.get("R", ""), fields.get("M", ""))
    if kind is None or kind.tempo is None:
        return tune
    match = _K_LINE.search(tune)
    if match is None:
        return tune
    return f"{tune[: match.start()]}Q:{kind.tempo}\n{tune[match.start() :]}"
