"""The drift statistics, pure numpy: PSI, Jensen-Shannon distance, total variation,
and the Kolmogorov-Smirnov statistic against a quantile sketch with its p-value.

No Ray, no pyarrow: these are the numbers :func:`raypipe.monitor.drift.check_window`
reports, and they are reused anywhere two distributions are compared (the
monitor actors, notebooks, benchmarks). See :mod:`raypipe.monitor.drift` for
which statistic applies to which kind of feature.

Example:
    >>> round(psi([0.5, 0.5], [30, 70]), 6)
    0.16946
    >>> js_distance([1, 0], [0, 1])
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_EPS",
    "ULPS",
    "psi",
    "js_distance",
    "ks_statistic",
    "ks_pvalue",
    "psi_of_shares",
    "js_of_shares",
    "tvd_of_shares",
    "ks_of_sorted",
    "ulp_slack",
    "SketchCDF",
]

DEFAULT_EPS = 1e-4
"""Share that replaces an empty bucket in PSI: ``ln(0)`` would make one empty bin infinite."""


def _fractions(func: str, param: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"The '{param}' parameter of {func} must be a non-empty 1-D array. Got shape {arr.shape} instead.")
    if not np.all(np.isfinite(arr)) or arr.min() < 0:
        raise ValueError(f"The '{param}' parameter of {func} must hold finite values >= 0. Got {arr.tolist()[:10]} instead.")
    total = arr.sum()
    if total <= 0:
        raise ValueError(f"The '{param}' parameter of {func} must have a positive sum. Got all zeros instead.")
    return arr / total


def _align(ref: Mapping[str, float], cur: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Bucket arrays of two category mappings; ``cur`` keys missing from ``ref`` share one last bucket."""
    keys = list(ref)
    ref_arr = np.array([float(ref[k]) for k in keys] + [0.0])
    cur_arr = np.array([float(cur.get(k, 0.0)) for k in keys] + [float(sum(v for k, v in cur.items() if k not in ref))])
    return ref_arr, cur_arr


def psi(ref_fracs: Any, cur_counts: Any, eps: float = DEFAULT_EPS) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))`` over matching buckets.

    Both sides are normalised to shares, then shares below ``eps`` are raised
    to ``eps`` (an empty bucket would otherwise contribute infinity). Every
    term is >= 0, so the PSI is >= 0, and 0 for identical shares. Rules of
    thumb: < 0.1 stable, 0.1-0.2 moderate shift, > 0.2 drift.

    Args:
        ref_fracs: the reference share of each bucket (array), or, for a
            categorical feature, ``{category: share}``.
        cur_counts: the window's count of each bucket (array of the same
            length), or ``{category: count}``: categories absent from
            ``ref_fracs`` are summed into one extra "unseen" bucket whose
            reference share is 0 (so ``eps``).
        eps: the floor of a share, > 0.

    Returns:
        The PSI as a float.

    Raises:
        ValueError: lengths differ, negative or non-finite values, a side sums to 0,
            or ``eps`` is not > 0.

    Example:
        >>> round(psi([0.5, 0.5], [30, 70]), 6)
        0.16946
        >>> round(psi({"a": 0.5, "b": 0.5}, {"a": 4, "b": 4, "new": 2}), 4)
        1.564
    """
    func = "psi"
    if not eps > 0:
        raise ValueError(f"The 'eps' parameter of {func} must be > 0. Got {eps!r} instead.")
    if isinstance(ref_fracs, Mapping) or isinstance(cur_counts, Mapping):
        if not (isinstance(ref_fracs, Mapping) and isinstance(cur_counts, Mapping)):
            raise ValueError(f"{func}: ref_fracs and cur_counts must both be arrays or both be mappings. Got one of each.")
        ref_fracs, cur_counts = _align(ref_fracs, cur_counts)
    r = _fractions(func, "ref_fracs", ref_fracs)
    c = _fractions(func, "cur_counts", cur_counts)
    if r.size != c.size:
        raise ValueError(f"The 'cur_counts' parameter of {func} must have {r.size} buckets (as ref_fracs). Got {c.size} instead.")
    return psi_of_shares(r, c, eps)


def psi_of_shares(r: np.ndarray, c: np.ndarray, eps: float) -> float:
    """:func:`psi` of two checked share arrays of the same length (no validation)."""
    r = np.maximum(r, eps)
    c = np.maximum(c, eps)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(p: Any, q: Any) -> float:
    """Jensen-Shannon distance in base 2 (0 = identical, 1 = disjoint).

    Equal to ``scipy.spatial.distance.jensenshannon(p, q, base=2)``: both
    sides are normalised to sum 1, ``0 * log 0`` is 0, and the result is the
    square root of the JS divergence.

    Args:
        p, q: bucket counts or shares of the same length, or two
            ``{category: value}`` mappings (keys of ``q`` missing from ``p``
            share one extra bucket, as in :func:`psi`).

    Raises:
        ValueError: lengths differ, negative or non-finite values, a side sums to 0.

    Example:
        >>> js_distance([1, 0], [0, 1]), js_distance([1, 2], [2, 4])
        (1.0, 0.0)
    """
    func = "js_distance"
    if isinstance(p, Mapping) and isinstance(q, Mapping):
        p, q = _align(p, q)
    a = _fractions(func, "p", p)
    b = _fractions(func, "q", q)
    if a.size != b.size:
        raise ValueError(f"The 'q' parameter of {func} must have {a.size} buckets (as p). Got {b.size} instead.")
    return js_of_shares(a, b)


def js_of_shares(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`js_distance` of two checked share arrays of the same length (no validation)."""
    m = (a + b) / 2.0
    # rel_entr semantics: x * ln(x / m) is 0 where x == 0 (and m > 0 wherever x > 0).
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(a > 0, a * np.log(a / m), 0.0)
        right = np.where(b > 0, b * np.log(b / m), 0.0)
    js = (left.sum() + right.sum()) / np.log(2.0)
    return float(np.sqrt(max(js, 0.0) / 2.0))


def tvd_of_shares(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance ``sup_A |P(A) - Q(A)|`` of two share arrays: half their L1 distance."""
    return float(0.5 * np.abs(a - b).sum())


ULPS = 4
"""Ulps within which a value equals a sketch point: the exact quantile kernel
interpolates ``(1 - f) * v + f * v`` inside a run of tied training values, which
can land one ulp off ``v``; without this slack an atom's whole mass would sit on
the wrong side of the window's own ``v``."""


def ulp_slack(x: np.ndarray) -> np.ndarray:
    """The distance within which values equal ``x`` (:data:`ULPS` ulps)."""
    return ULPS * np.spacing(np.abs(x))


class SketchCDF:
    """The piecewise-linear CDF through the sketch points ``(xs[i], ps[i])``.

    ``xs`` is non-decreasing. A run of equal ``xs`` is an atom: the CDF jumps
    there from the run's first level to its last. :meth:`right` is ``P(X <= x)``
    (right-continuous), :meth:`left` the left limit ``P(X < x)``. Below ``xs[0]``
    the CDF is 0, from ``xs[-1]`` on it is 1. Points within :data:`ULPS` ulps
    of each other are one value.

    Built once per profile column (O(sketch)); it is split into a continuous
    piecewise-linear part, which ``np.interp`` evaluates in one C pass, plus
    the atoms' jumps, found by a binary search among the (few) atoms only.
    """

    def __init__(self, xs: np.ndarray, ps: np.ndarray) -> None:
        # Interpolation between equal neighbours can round one ulp down; the CDF needs order.
        xs = np.maximum.accumulate(np.asarray(xs, dtype=np.float64))
        ps = np.asarray(ps, dtype=np.float64)
        starts = np.flatnonzero(np.concatenate(([True], np.diff(xs) > ulp_slack(xs[1:]))))
        ends = np.append(starts[1:], xs.size) - 1
        knots, first, last = xs[starts], ps[starts], ps[ends]
        jumps = last - first
        self._knots = knots
        # The continuous part at each knot: the level there less the jumps before it.
        self._cont = first - np.concatenate(([0.0], np.cumsum(jumps)[:-1]))
        atoms = knots[jumps > 0]
        self._atoms_le = atoms - ulp_slack(atoms)  # x >= this: the atom is in P(X <= x)
        self._atoms_lt = atoms + ulp_slack(atoms)  # x > this: the atom is in P(X < x)
        self._cum = np.concatenate(([0.0], np.cumsum(jumps[jumps > 0])))
        self._top = knots[-1]
        self._top_le, self._top_lt = self._top - ulp_slack(self._top), self._top + ulp_slack(self._top)

    def right(self, x: np.ndarray) -> np.ndarray:
        """``P(X <= x)``."""
        f = np.interp(x, self._knots, self._cont)
        if self._cum.size > 1:
            f += self._cum[np.searchsorted(self._atoms_le, x, side="right")]
        # The sums above can end one ulp below 1; at and past the maximum it is exactly 1.
        return np.where(x >= self._top_le, 1.0, np.minimum(f, 1.0))

    def left(self, x: np.ndarray) -> np.ndarray:
        """``P(X < x)``."""
        f = np.interp(x, self._knots, self._cont)
        if self._cum.size > 1:
            f += self._cum[np.searchsorted(self._atoms_lt, x, side="left")]
        return np.where(x > self._top_lt, 1.0, np.minimum(f, 1.0))


def ks_statistic(sample: Any, ref_values: Any, ref_levels: Any) -> float:
    """Kolmogorov-Smirnov statistic of ``sample`` against a reference quantile sketch.

    The reference CDF is piecewise linear through ``(ref_values[i],
    ref_levels[i])``: ``ref_values[i]`` is the ``ref_levels[i]``-quantile of
    the reference sample, ``ref_levels`` runs from 0 (the minimum) to 1 (the
    maximum); repeated values are atoms (jumps). The statistic is the exact
    ``sup_x |G(x) - F(x)|`` between the sample's empirical CDF ``G`` and that
    ``F``: evaluated at every sample value, from the right and from the left,
    which is where the supremum of a step function against a monotone one lies.
    It equals ``scipy.stats.kstest(sample, F)`` for a continuous sample.

    Against ``scipy.stats.ks_2samp(sample, reference)`` on the full reference
    sample of ``N`` values, with a sketch of ``m`` intervals of linear-
    interpolated quantiles (:data:`raypipe.monitor.profile.SKETCH_LEVELS`),
    the difference is at most ``1/m + 2/N``: between two sketch points both
    CDFs stay within one level step, and a linear-interpolated quantile is
    within two order statistics of its level.

    Cost: one sort of the sample and two linear interpolations into the
    sketch, O(n log n + n log m); nothing depends on ``N``.

    Args:
        sample: the window's values; NaN is dropped.
        ref_values: non-decreasing sketch values.
        ref_levels: their levels, increasing from 0 to 1, same length.

    Raises:
        ValueError: no finite value in ``sample``, or a malformed sketch.

    Example:
        >>> ks_statistic([0.5], [0.0, 1.0], [0.0, 1.0])
        0.5
    """
    func = "ks_statistic"
    x = np.asarray(sample, dtype=np.float64).ravel()
    x = np.sort(x[~np.isnan(x)])
    if x.size == 0:
        raise ValueError(f"The 'sample' parameter of {func} must hold at least one non-NaN value. Got none.")
    xs = np.asarray(ref_values, dtype=np.float64)
    ps = np.asarray(ref_levels, dtype=np.float64)
    if xs.ndim != 1 or xs.shape != ps.shape or xs.size < 2:
        raise ValueError(
            f"The 'ref_values' and 'ref_levels' parameters of {func} must be 1-D of the same length >= 2. "
            f"Got shapes {xs.shape} and {ps.shape} instead."
        )
    if np.any(np.diff(xs) < 0) or np.any(np.diff(ps) <= 0) or ps[0] != 0 or ps[-1] != 1 or not np.all(np.isfinite(xs)):
        raise ValueError(
            f"The 'ref_values' and 'ref_levels' parameters of {func} must be a quantile sketch: finite, "
            f"non-decreasing values at increasing levels from 0 to 1. Got levels {ps[0]}..{ps[-1]}."
        )
    return ks_of_sorted(x, SketchCDF(xs, ps))


def ks_of_sorted(x: np.ndarray, cdf: SketchCDF) -> float:
    """KS statistic of the sorted, NaN-free sample ``x`` against ``cdf``."""
    n = x.size
    # Per distinct sample value v: G(v) counts the values <= v, G(v-) those < v.
    starts = np.flatnonzero(np.r_[True, x[1:] != x[:-1]]) if n > 1 else np.zeros(1, dtype=np.intp)
    v = x[starts]
    above = np.r_[starts[1:], n] / n - cdf.right(v)
    below = cdf.left(v) - starts / n
    return float(max(above.max(), below.max(), 0.0))


def _kolmogorov_sf(lam: float) -> float:
    """``P(K > lam)`` of the Kolmogorov distribution (``scipy.stats.kstwobign.sf``)."""
    if lam <= 0:
        return 1.0
    k = np.arange(1, 12, dtype=np.float64)
    if lam < 1.18:
        # The alternating series converges slowly for small lam; Jacobi's
        # theta identity gives a series that converges fast there instead.
        cdf = math.sqrt(2 * math.pi) / lam * np.sum(np.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * lam**2)))
        return float(min(max(1.0 - cdf, 0.0), 1.0))
    sf = 2 * np.sum((-1) ** (k - 1) * np.exp(-2 * k**2 * lam**2))
    return float(min(max(sf, 0.0), 1.0))


def ks_pvalue(statistic: float, n: int, n_ref: int | None = None) -> float:
    """Two-sided p-value of a KS statistic, from the asymptotic Kolmogorov distribution.

    With the effective size ``ne = n * n_ref / (n + n_ref)`` (``ne = n`` when
    ``n_ref`` is None: a reference so large that it is the true distribution),
    ``p = Q_KS((sqrt(ne) + 0.12 + 0.11 / sqrt(ne)) * D)``, where ``Q_KS`` is
    the Kolmogorov survival function (``scipy.stats.kstwobign.sf``) and the
    bracket is Stephens' (1970) small-sample correction. Pure numpy; it is
    within 0.02 of the exact ``scipy.stats.kstwo.sf(D, round(ne))`` (what
    ``ks_2samp(method="asymp")`` uses) for ``ne >= 20``, and within 0.003 for
    ``ne >= 2000``. Not for tiny windows: below ~20 rows use scipy's exact test.

    Raises:
        ValueError: ``n`` (or ``n_ref``) is not >= 1, or ``statistic`` is outside [0, 1].

    Example:
        >>> round(ks_pvalue(0.05, 2000, 100000), 4)
        0.0001
    """
    func = "ks_pvalue"
    if not 0 <= statistic <= 1:
        raise ValueError(f"The 'statistic' parameter of {func} must be in [0, 1]. Got {statistic!r} instead.")
    if n < 1 or (n_ref is not None and n_ref < 1):
        raise ValueError(f"The 'n' and 'n_ref' parameters of {func} must be >= 1. Got n={n!r}, n_ref={n_ref!r} instead.")
    ne = float(n) if n_ref is None else n * n_ref / (n + n_ref)
    root = math.sqrt(ne)
    return _kolmogorov_sf((root + 0.12 + 0.11 / root) * statistic)
