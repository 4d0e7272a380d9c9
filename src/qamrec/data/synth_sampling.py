"""The random building blocks of the synthetic MovieLens generator (:mod:`qamrec.data.synth`): Zipf-Mandelbrot
ranks, capped proportional allocation, popularity without replacement, user arrivals and session timestamps,
quantile cuts for rating values, and the Gini coefficient of the result.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["T_START", "T_END", "seeded_rng", "zm_ranks", "allocate", "popularity_order", "gini", "sample_movies",
           "session_timestamps", "arrival_times", "quantile_cuts"]

T_START = 789_609_600  # 1995-01-09 00:00 UTC
T_END = 1_697_155_199  # 2023-10-12 23:59:59 UTC
_DAY = 86_400
_YEAR = 365.25 * _DAY


def seeded_rng(seed: int, *stream: int) -> np.random.Generator:
    """The random stream ``stream`` of ``seed`` (every chunk of users has its own)."""
    return np.random.default_rng([seed, *stream])


def zm_ranks(rng: np.random.Generator, n: int, m: int, a: float, q: float) -> np.ndarray:
    """``n`` ranks in [0, m) with P(r) ~ (r + q) ** -a (continuous inverse CDF, O(1) per draw)."""
    u = rng.random(n)
    if abs(a - 1.0) < 1e-9:
        x = q * np.power((m + q) / q, u) - q
    else:
        b = 1.0 - a
        lo, hi = q**b, (m + q) ** b
        x = np.power(lo + u * (hi - lo), 1.0 / b) - q
    return np.minimum(x.astype(np.int64), m - 1)


def allocate(total: int, weights: np.ndarray, cap: int) -> np.ndarray:
    """Integers in [0, cap], proportional to ``weights`` where not capped, summing to exactly ``total``."""
    n = weights.size
    if total > cap * n:
        raise ValueError(f"cannot place {total} in {n} slots of at most {cap}")
    lo, hi = 0.0, cap / float(weights.min()) + 1.0
    for _ in range(200):  # bisect the water level: sum(min(cap, lam * w)) == total
        mid = (lo + hi) / 2
        if np.minimum(cap, mid * weights).sum() <= total:
            lo = mid
        else:
            hi = mid
    y = np.minimum(cap, lo * weights)
    out = np.floor(y).astype(np.int64)
    frac = y - out
    while (rest := total - int(out.sum())) > 0:
        open_ = np.flatnonzero(out < cap)
        take = open_[np.argsort(-frac[open_], kind="stable")[:rest]]
        out[take] += 1
        frac[take] = -1.0
    return out


def popularity_order(n_movies: int, rng: np.random.Generator) -> np.ndarray:
    """Positions (in movieId order) of the movies from most to least popular."""
    key = np.log1p(np.arange(n_movies)) + rng.normal(0.0, 1.0, n_movies)
    return np.argsort(key, kind="stable")


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of ``counts`` (0: all equal; towards 1: all in one)."""
    c = np.sort(counts.astype(np.float64))
    n, total = c.size, c.sum()
    if n == 0 or total == 0:
        return 0.0
    return float((2.0 * np.sum(np.arange(1, n + 1) * c) / (n * total)) - (n + 1) / n)


def sample_movies(
    rng: np.random.Generator, n: np.ndarray, m: int, a: float, q: float
) -> tuple[np.ndarray, np.ndarray]:
    """For users ``0..len(n)-1`` draw ``n[u]`` distinct movie ranks each, by popularity without replacement.

    Sequential sampling: draw with replacement, keep first occurrences in draw order, draw again for the
    users still short; after a few rounds the rest is filled with Gumbel-top-k over the whole catalogue.
    Returns (user, rank) grouped by user, in draw order.
    """
    b = n.size
    have_u = np.empty(0, np.int64)
    have_r = np.empty(0, np.int64)
    pending = np.arange(b)
    done_u: list[np.ndarray] = []
    done_r: list[np.ndarray] = []
    factor = 1.3
    for _ in range(6):
        if pending.size == 0:
            break
        short = n[pending] - np.bincount(have_u, minlength=b)[pending]
        du = np.repeat(pending, np.ceil(short * factor).astype(np.int64) + 2)
        cu = np.concatenate([have_u, du])
        cr = np.concatenate([have_r, zm_ranks(rng, du.size, m, a, q)])
        _, first = np.unique(cu * m + cr, return_index=True)
        first.sort()  # first occurrences, in draw order (what users already have comes first)
        cu, cr = cu[first], cr[first]
        order = np.argsort(cu, kind="stable")
        cu, cr = cu[order], cr[order]
        pos = np.arange(cu.size) - np.searchsorted(cu, cu, side="left")
        keep = pos < n[cu]
        cu, cr = cu[keep], cr[keep]
        full = np.bincount(cu, minlength=b)[cu] >= n[cu]
        done_u.append(cu[full])
        done_r.append(cr[full])
        have_u, have_r = cu[~full], cr[~full]
        pending = np.unique(have_u)
        factor *= 2.0
    if pending.size:  # heavy users close to the catalogue size: exact Gumbel-top-k for the remainder
        logw = -a * np.log(np.arange(m) + q)
        for u in pending:
            mine = have_r[have_u == u]
            keys = logw + rng.gumbel(size=m)
            keys[mine] = -np.inf
            extra = np.argsort(-keys, kind="stable")[: n[u] - mine.size]
            done_u.append(np.full(mine.size + extra.size, u))
            done_r.append(np.concatenate([mine, extra]))
    users = np.concatenate(done_u)
    ranks = np.concatenate(done_r)
    order = np.argsort(users, kind="stable")
    return users[order], ranks[order]


def session_timestamps(rng: np.random.Generator, n: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per-rating timestamps for users with ``n`` ratings arriving at ``start``, in session clusters."""
    b, total = n.size, int(n.sum())
    k = np.minimum(n, 1 + rng.poisson(0.8 * np.log1p(n / 10.0)))  # sessions per user
    sess_user = np.repeat(np.arange(b), k)
    first = np.cumsum(k) - k
    gaps = rng.lognormal(math.log(30 * _DAY), 1.5, sess_user.size)
    gaps[first] = 0.0
    cs = np.cumsum(gaps)
    offset = cs - cs[first][sess_user]
    span = offset[first + k - 1]
    room = T_END - T_START - 2 * _DAY
    squeeze = np.minimum(1.0, room / np.maximum(span, 1.0))
    offset *= squeeze[sess_user]
    span *= squeeze
    t0 = np.clip(np.minimum(start, T_END - 2 * _DAY - span), T_START, None)
    sess_time = t0[sess_user] + offset
    # each rating goes to a session (earlier sessions get more), then seconds apart within it
    r_user = np.repeat(np.arange(b), n)
    local = np.minimum((k[r_user] * rng.random(total) ** 2).astype(np.int64), k[r_user] - 1)
    gs = first[r_user] + local
    order = np.argsort(gs, kind="stable")
    gs_sorted = gs[order]
    step = np.cumsum(rng.exponential(25.0, total))
    seg_start = np.searchsorted(gs_sorted, gs_sorted, side="left")
    within = step - step[seg_start]
    ts = np.empty(total, dtype=np.int64)
    ts[order] = np.clip(sess_time[gs_sorted] + within, T_START, T_END).astype(np.int64)
    return ts


def arrival_times(rng: np.random.Generator, n_users: int, growth: float = 0.07) -> np.ndarray:
    """User arrival times in [T_START, T_END] with a density growing ``growth`` per year."""
    span_years = (T_END - T_START) / _YEAR
    u = rng.random(n_users)
    years = np.log1p(u * math.expm1(growth * span_years)) / growth
    return T_START + years * _YEAR


def quantile_cuts(latent: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Cut points on ``latent`` giving each level its share of the values."""
    cum = np.cumsum(shares / shares.sum())[:-1]
    return np.quantile(latent, cum)
