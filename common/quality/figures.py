"""Quality figures of tunes: validity, rhythm, form, length, near-copies and diversity.

One tune is assessed by `assess_tune` (abc2midi's verdict when a checker is given, the rhythm
check of `common.abc.rhythm`, its nearest training tune from a `MelodyIndex`); a set of tunes is
summed up by `summarise` into the `QualityReport` that batch manifests, ``producer report`` and
``bench/quality.py`` print. Definitions:

* **valid**: abc2midi converts the tune without an ``Error`` line;
* **rhythm ok**: every bar lasts its meter (pickups and the closing bars that complete them
  allowed); tunes without a meter count as ok, having nothing to check;
* **bar regularity**: share of all bars (of tunes with a meter) that are not wrong by that rule;
* **two-part form**: two parts of 8 bars (repeat written or not) or 16 bars written out;
* **near-copy**: melody similarity to the nearest training tune >= the threshold;
* **diversity**: `common.quality.similarity.distinct_share` of the set's fingerprints;
* **keys**: share of the tunes (with a readable ``K:``) in each key, ``Ador`` and ``A Dorian``
  counted as one: a model that writes every tune in G, or in keys its corpus never uses, shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from common.abc.music import read_music
from common.abc.rhythm import check_music
from common.params import NEAR_COPY_THRESHOLD
from common.quality.similarity import Grams, MelodyIndex, distinct_share, fingerprint_of_pitches
from common.schemas import QualityReport

#: abc2midi's verdict on one tune: (ok, error lines).
Checker = Callable[[str], tuple[bool, list[str]]]


@dataclass
class TuneQuality:
    chars: int
    valid: bool | None
    rhythm_checked: bool
    rhythm_ok: bool
    bars: int
    wrong_bars: int
    two_part: bool
    reasons: list[str] = field(default_factory=list)
    nearest_tune: str | None = None
    similarity: float | None = None
    fingerprint: Grams | None = None
    key: str | None = None

    def brief_reasons(self, each: int = 5) -> list[str]:
        """The first `each` abc2midi errors and the first `each` rhythm reasons."""
        tool = [r for r in self.reasons if not r.startswith("rhythm: ")]
        rhythm = [r for r in self.reasons if r.startswith("rhythm: ")]
        return tool[:each] + rhythm[:each]

    def near_copy(self, threshold: float = NEAR_COPY_THRESHOLD) -> bool:
        return self.similarity is not None and self.similarity >= threshold


def assess_tune(
    tune: str, *, checker: Checker | None = None, index: MelodyIndex | None = None
) -> TuneQuality:
    """Every figure of one tune; abc2midi and the copy check only when given."""
    from common.abc.music import melody, split_header
    from common.abc.transpose import key_name

    music = read_music(tune)
    rhythm = check_music(music)
    grams = fingerprint_of_pitches(list(melody(music)))
    valid: bool | None = None
    reasons: list[str] = []
    if checker is not None:
        valid, errors = checker(tune)
        reasons.extend(errors)
    reasons.extend(f"rhythm: {r}" for r in rhythm.reasons)
    quality = TuneQuality(
        chars=len(tune),
        valid=valid,
        rhythm_checked=rhythm.checked,
        rhythm_ok=rhythm.ok,
        bars=rhythm.bars,
        wrong_bars=rhythm.wrong_bars,
        two_part=rhythm.two_part,
        reasons=reasons,
        fingerprint=grams,
        key=key_name(split_header(tune)[0].get("K", "")),
    )
    if index is not None:
        match = index.nearest(grams)
        if match is not None:
            quality.nearest_tune, quality.similarity = match.name, match.similarity
    return quality


def _share(hits: int, total: int) -> float:
    return round(hits / total, 4) if total else 0.0


def summarise(
    tunes: Sequence[TuneQuality],
    *,
    threshold: float = NEAR_COPY_THRESHOLD,
    tries: int | None = None,
    tries_valid: int | None = None,
    tries_rhythm_ok: int | None = None,
) -> QualityReport:
    """The set's figures (see the module docstring); raw rates when the tries are given."""
    n = len(tunes)
    checked = [t for t in tunes if t.rhythm_checked]
    bars = sum(t.bars for t in checked)
    judged = [t for t in tunes if t.valid is not None]
    compared = [t for t in tunes if t.similarity is not None]
    return QualityReport(
        tunes=n,
        valid=_share(sum(1 for t in judged if t.valid), len(judged)) if judged else None,
        rhythm_ok=_share(sum(1 for t in tunes if t.rhythm_ok), n),
        bar_regularity=_share(bars - sum(t.wrong_bars for t in checked), bars) if bars else None,
        two_part=_share(sum(1 for t in tunes if t.two_part), n),
        mean_bars=round(sum(t.bars for t in tunes) / n, 2) if n else 0.0,
        mean_chars=round(sum(t.chars for t in tunes) / n, 1) if n else 0.0,
        near_copy=(
            _share(sum(1 for t in compared if t.near_copy(threshold)), len(compared))
            if compared
            else None
        ),
        near_copy_threshold=threshold if compared else None,
        mean_similarity=(
            round(sum(t.similarity or 0.0 for t in compared) / len(compared), 4)
            if compared
            else None
        ),
        diversity=round(
            distinct_share([t.fingerprint for t in tunes if t.fingerprint is not None]), 4
        ),
        keys=key_shares(tunes),
        tries=tries,
        raw_valid=_share(tries_valid, tries) if tries and tries_valid is not None else None,
        raw_rhythm_ok=(
            _share(tries_rhythm_ok, tries) if tries and tries_rhythm_ok is not None else None
        ),
    )


def key_shares(tunes: Sequence[TuneQuality]) -> dict[str, float] | None:
    """Share of each key among the tunes whose key is known, most common first (ties by name);
    None when no tune's key is known."""
    from collections import Counter

    counted = Counter(t.key for t in tunes if t.key is not None)
    total = sum(counted.values())
    ranked = sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))
    return {k: _share(n, total) for k, n in ranked} if total else None


def key_spread(keys: dict[str, float] | None, most: int = 6) -> str:
    """``G 38 %, D 26 %, A 11 %, ..., 7 others 9 %``: the `most` commonest keys, then the rest."""
    if not keys:
        return "-"
    ranked = list(keys.items())
    shown = [f"{k} {100 * v:.0f} %" for k, v in ranked[:most]]
    rest = ranked[most:]
    if rest:
        shown.append(f"{len(rest)} others {100 * sum(v for _, v in rest):.0f} %")
    return ", ".join(shown)


def assess_texts(
    tunes: Sequence[str],
    *,
    checker: Checker | None = None,
    index: MelodyIndex | None = None,
    workers: int = 4,
) -> list[TuneQuality]:
    """`assess_tune` for many tunes, abc2midi runs in parallel threads (it is a subprocess)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda t: assess_tune(t, checker=checker, index=index), tunes))
