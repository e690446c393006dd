"""A set of tunes against human tunes, feature by feature: MGEval's overlap (Yang & Lerch 2018).

Per feature of `common.quality.musicality.FEATURES`, the distances between every two reference
tunes (intra-set) and between every candidate and every reference tune (inter-set) are smoothed
by a Gaussian kernel density, one bandwidth for both (from the reference's distances), and the
**overlap** area of the two densities is the feature's score: 1 when a candidate is as close to
the reference tunes as they are to each other, towards 0 as the set moves away. KL(intra ||
inter) is kept beside it. A family's score (pitch, rhythm, structure) is the mean of its
features' overlaps; the overall score the mean of all features'.

The reference's side (its feature vectors, intra-set distances and bandwidths) is a `Reference`:
built once per corpus and stored as JSON, so scoring a batch computes only the batch's features
and its distances to the reference. The reference is half of a corpus's validation tunes
(`split_halves`); the other half is the "human" row, so that human against human is measured
between different tunes and does not read 1 by construction.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from common.quality.musicality import (
    FAMILIES,
    FEATURES,
    SHARES,
    SUMMARY_LABELS,
    TuneFeatures,
    Vector,
    summary,
)


def _matrix(tunes: Sequence[TuneFeatures], name: str) -> Vector:
    rows = [t.values[name] for t in tunes]
    kept = [r for r in rows if r is not None]
    if not kept:
        return np.zeros((0, 1), dtype=np.float64)
    return np.vstack(kept)


def _distances(a: Vector, b: Vector | None = None) -> Vector:
    """Euclidean distances: every pair within `a` (upper triangle), or every row of `a` to every
    row of `b`."""
    if b is None:
        if len(a) < 2:
            return np.zeros(0, dtype=np.float64)
        d = np.sqrt(np.maximum(_squared(a, a), 0.0))
        return d[np.triu_indices(len(a), k=1)]
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, dtype=np.float64)
    return np.sqrt(np.maximum(_squared(a, b), 0.0)).ravel()


def _squared(a: Vector, b: Vector) -> Vector:
    aa = (a * a).sum(axis=1)[:, None]
    bb = (b * b).sum(axis=1)[None, :]
    result: Vector = aa + bb - 2.0 * (a @ b.T)
    return result


#: Figures of a set: the `summary` figures, and for a scored set its overlaps.
Figures = dict[str, float | None]


@dataclass
class Reference:
    """A reference set's features, ready to score sets with (built once per corpus, stored)."""

    name: str
    #: What it was built from (the corpus's hash and the features' version): a cached reference
    #: with another source is stale.
    source: str
    tunes: int
    #: Per feature: the reference tunes' vectors (tunes without the feature left out).
    matrices: dict[str, Vector]
    #: Per meter text: the shortest note the corpus uses (whole notes, as text).
    shortest: dict[str, str]
    #: Figures to show beside a set's: "human" (the held-out half, scored like any set) and
    #: "corpus" (every tune of the corpus).
    baselines: dict[str, Figures] = field(default_factory=dict)
    #: Per feature: the intra-set distances and the kernel bandwidth derived from them.
    intra: dict[str, Vector] = field(default_factory=dict)
    bandwidth: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.intra:
            self.intra = {k: _distances(v) for k, v in self.matrices.items()}
            self.bandwidth = {k: _bandwidth(v) for k, v in self.intra.items()}

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "source": self.source,
                "tunes": self.tunes,
                "matrices": {k: v.tolist() for k, v in self.matrices.items()},
                "shortest": self.shortest,
                "baselines": self.baselines,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Reference:
        data = json.loads(text)
        matrices = {
            k: np.array(v, dtype=np.float64).reshape(len(v), -1) if v else np.zeros((0, 1))
            for k, v in data["matrices"].items()
        }
        return cls(
            name=data["name"],
            source=data["source"],
            tunes=data["tunes"],
            matrices=matrices,
            shortest=data["shortest"],
            baselines=data["baselines"],
        )


def _bandwidth(distances: Vector) -> float:
    """Scott's rule on the reference's intra-set distances, at least 2 % of their spread (so a
    feature most tunes share, like ending on the tonic, still has a density)."""
    if len(distances) == 0:
        return 1.0
    spread = float(distances.max() - distances.min())
    scott = float(distances.std()) * float(len(distances)) ** -0.2
    return float(max(scott, 0.02 * spread, 1e-6))


def shortest_per_meter(tunes: Iterable[TuneFeatures]) -> dict[str, str]:
    found: dict[str, Fraction] = {}
    for t in tunes:
        if t.shortest is not None and t.meter_text:
            found[t.meter_text] = min(found.get(t.meter_text, t.shortest), t.shortest)
    return {k: str(v) for k, v in sorted(found.items())}


def build_reference(
    name: str,
    tunes: Sequence[TuneFeatures],
    *,
    source: str = "",
    shortest: dict[str, str] | None = None,
) -> Reference:
    """A `Reference` of `tunes` (the shortest notes per meter from `shortest`, else from them)."""
    return Reference(
        name=name,
        source=source,
        tunes=len(tunes),
        matrices={f: _matrix(tunes, f) for f in FEATURES},
        shortest=shortest if shortest is not None else shortest_per_meter(tunes),
    )


def _density(samples: Vector, grid: Vector, bandwidth: float) -> Vector:
    """Gaussian kernel density of `samples` on the evenly spaced `grid`, integrating to 1.

    The samples are binned linearly onto the grid, then the bins are smoothed by the kernel: the
    same density up to a fraction of a grid step, in time linear in the samples (a batch of 200
    tunes has 7,000 distances to the reference per feature, times 512 grid points exactly).
    """
    step = float(grid[1] - grid[0])
    position = (samples - grid[0]) / step
    left = np.clip(np.floor(position).astype(np.int64), 0, len(grid) - 2)
    right_weight = np.clip(position - left, 0.0, 1.0)
    counts = np.bincount(left, weights=1.0 - right_weight, minlength=len(grid))
    counts += np.bincount(left + 1, weights=right_weight, minlength=len(grid))
    half = int(np.ceil(4 * bandwidth / step))
    offsets = np.arange(-half, half + 1) * step
    kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2)
    density: Vector = np.convolve(counts, kernel)[half : half + len(grid)]
    return density / (float(density.sum()) * step)


@dataclass(frozen=True)
class FeatureScore:
    overlap: float | None
    kl: float | None


def compare_feature(intra: Vector, inter: Vector, bandwidth: float) -> FeatureScore:
    """Overlap area and KL(intra || inter) of the two distance densities, one bandwidth for both
    so that identical distributions overlap fully."""
    if len(intra) == 0 or len(inter) == 0:
        return FeatureScore(None, None)
    low = min(float(intra.min()), float(inter.min())) - 4 * bandwidth
    high = max(float(intra.max()), float(inter.max())) + 4 * bandwidth
    grid = np.linspace(low, high, 512)
    p = _density(intra, grid, bandwidth)
    q = _density(inter, grid, bandwidth)
    step = float(grid[1] - grid[0])
    overlap = float(np.minimum(p, q).sum() * step)
    eps = 1e-12
    kl = float((p * np.log((p + eps) / (q + eps))).sum() * step)
    return FeatureScore(round(min(overlap, 1.0), 4), round(max(kl, 0.0), 4))


@dataclass
class Comparison:
    """A set against a reference: per feature, per family, overall, and the set's summary."""

    reference: str
    tunes: int
    features: dict[str, FeatureScore]
    families: dict[str, float | None]
    overall: float | None
    summary: dict[str, float | None] = field(default_factory=dict)


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), 4) if kept else None


def compare(tunes: Sequence[TuneFeatures], reference: Reference) -> Comparison:
    """Score a set of tunes against `reference` (see the module docstring)."""
    scores: dict[str, FeatureScore] = {}
    for name in FEATURES:
        ref = reference.matrices.get(name)
        if ref is None:
            scores[name] = FeatureScore(None, None)
            continue
        inter = _distances(_matrix(tunes, name), ref)
        scores[name] = compare_feature(reference.intra[name], inter, reference.bandwidth[name])
    families = {
        family: _mean(s.overlap for f, s in scores.items() if FEATURES[f] == family)
        for family in FAMILIES
    }
    return Comparison(
        reference=reference.name,
        tunes=len(tunes),
        features=scores,
        families=families,
        overall=_mean(s.overlap for s in scores.values()),
        summary=summary(tunes, reference.shortest),
    )


def _digest(tune: str) -> int:
    return int.from_bytes(hashlib.sha256(tune.encode("utf-8")).digest()[:8], "big")


def split_halves(tunes: Sequence[str]) -> tuple[list[str], list[str]]:
    """(reference, held-out human) halves of a set of human tunes, decided by each tune's hash
    so that the same tunes always land in the same half: human against human is then measured
    between different tunes, not trivially 1."""
    ordered = sorted(tunes, key=_digest)
    return ordered[0::2], ordered[1::2]


def overlap_table(comparisons: dict[str, Comparison]) -> list[tuple[str, list[str]]]:
    """Rows (label, one cell per set) of features, families, overall and summary figures."""
    sets = list(comparisons.values())

    def cell(value: float | None, pct: bool = False) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return (
            f"{100 * value:.1f} %" if pct else f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
        )

    rows: list[tuple[str, list[str]]] = [("tunes", [str(c.tunes) for c in sets])]
    rows.append(("overall overlap", [cell(c.overall) for c in sets]))
    for family in FAMILIES:
        rows.append((f"{family} overlap", [cell(c.families[family]) for c in sets]))
    for name, family in FEATURES.items():
        rows.append((f"  {family}: {name}", [cell(c.features[name].overlap) for c in sets]))
    for key, label in SUMMARY_LABELS.items():
        rows.append((label, [cell(c.summary.get(key), key in SHARES) for c in sets]))
    return rows
