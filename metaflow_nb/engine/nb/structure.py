"""Price-structure kernels ("smart money" / ICT concepts). Arrays in, arrays out.

Every kernel is causal: output ``i`` reads inputs ``0..i`` only, so removing the bars after
``i`` never changes output ``i``. Swings are stamped on the bar that *confirms* them (the
last of their right-hand bars), never on the swing bar itself.

Kernels here:

* :func:`swing_points`       swing highs / lows stamped on their confirmation bar
* :func:`market_structure`   trend state, break of structure (BOS), change of character (CHoCH)
* :func:`liquidity_levels`   unswept swing levels (buy-/sell-side liquidity), pooled equal highs/lows
* :func:`fvg`                three-candle fair value gaps
* :func:`structure_filter`   keep setups that follow a recent break in their direction
* :func:`liquidity_sweeps`   wicks through the previous bar's nearest liquidity that close back inside
* :func:`adx`                Wilder's ADX with +DI / -DI

Reuses :mod:`.indicators` (``true_range``, ``wilder``) rather than duplicating them.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .indicators import true_range, wilder

#: relative tolerance (fraction of price) for "size >= threshold" tests, so that a gap of
#: exactly 3 pips (0.97372 - 0.97342 = 0.000299999...) is not lost to float rounding
PRICE_RTOL = 1e-9


# ---------------------------------------------------------------- swings

@njit(cache=True)
def swing_points(high, low, left, right):
    """Swing highs and lows, each stamped on its confirmation bar ``j + right``.

    Bar ``j`` is a swing high when ``high[j] >= high[j-k]`` for ``k = 1..left`` and
    ``high[j] > high[j+k]`` for ``k = 1..right`` (ties allowed on the left, strict on the
    right, so a flat top of equal highs yields one swing: its last bar). Mirror for swing
    lows with ``low`` and ``<=`` / ``<``. ``j`` needs ``left`` bars before it. The swing is
    known at the close of bar ``c = j + right`` and is written there.

    Returns ``(swing_high, swing_high_bar, swing_low, swing_low_bar, last_swing_high,
    last_swing_low)``: the swing price on the confirmation bar (NaN elsewhere), the swing
    bar index ``j`` on the confirmation bar (-1 elsewhere), and the price of the most
    recently confirmed swing as known at each bar (NaN before the first).
    """
    n = high.shape[0]
    sh = np.full(n, np.nan)
    shb = np.full(n, -1, dtype=np.int64)
    sl = np.full(n, np.nan)
    slb = np.full(n, -1, dtype=np.int64)
    lsh = np.full(n, np.nan)
    lsl = np.full(n, np.nan)
    last_h = np.nan
    last_l = np.nan
    for c in range(n):
        j = c - right
        if j >= left:
            hj = high[j]
            ok = True
            for k in range(1, left + 1):
                if not (hj >= high[j - k]):
                    ok = False
                    break
            if ok:
                for k in range(1, right + 1):
                    if not (hj > high[j + k]):
                        ok = False
                        break
            if ok:
                sh[c] = hj
                shb[c] = j
                last_h = hj
            lj = low[j]
            ok = True
            for k in range(1, left + 1):
                if not (lj <= low[j - k]):
                    ok = False
                    break
            if ok:
                for k in range(1, right + 1):
                    if not (lj < low[j + k]):
                        ok = False
                        break
            if ok:
                sl[c] = lj
                slb[c] = j
                last_l = lj
        lsh[c] = last_h
        lsl[c] = last_l
    return sh, shb, sl, slb, lsh, lsl


# ---------------------------------------------------------------- market structure

@njit(cache=True)
def market_structure(close, swing_high, swing_low):
    """Trend state and structure breaks from closes and confirmed swings.

    ``swing_high`` / ``swing_low`` are the confirmation-bar stamped swing prices of
    :func:`swing_points` (NaN where none). At each bar ``i``: first a swing confirmed on
    ``i`` becomes the live level of its side (replacing the previous one, broken or not);
    then a close strictly above the live, not yet broken swing-high level is a bullish
    break, a close strictly below the live swing-low level a bearish one. Each level can be
    broken once. A break in the direction of the trend is a break of structure (BOS); a
    break against it, or the first break from no trend, is a change of character (CHoCH)
    and sets the trend to the break's direction. A bar closing beyond both live levels at
    once (impossible with consistent bars: it needs a live swing high below a live swing
    low) consumes both and reports no break.

    Returns ``(trend, bos, choch, break_dir, last_break_bar_bull, last_break_bar_bear)``:
    int8 trend after bar ``i`` (+1/-1/0), int8 events on the break bar, and the index of
    the latest bullish / bearish break known at bar ``i`` (-1 before the first).
    """
    n = close.shape[0]
    trend = np.zeros(n, dtype=np.int8)
    bos = np.zeros(n, dtype=np.int8)
    choch = np.zeros(n, dtype=np.int8)
    brk = np.zeros(n, dtype=np.int8)
    lbull = np.full(n, -1, dtype=np.int64)
    lbear = np.full(n, -1, dtype=np.int64)
    hi_level = np.nan
    lo_level = np.nan
    hi_live = False
    lo_live = False
    t = 0
    last_bull = -1
    last_bear = -1
    for i in range(n):
        if not np.isnan(swing_high[i]):
            hi_level = swing_high[i]
            hi_live = True
        if not np.isnan(swing_low[i]):
            lo_level = swing_low[i]
            lo_live = True
        c = close[i]
        up = hi_live and c > hi_level
        down = lo_live and c < lo_level
        if up:
            hi_live = False
        if down:
            lo_live = False
        d = 0
        if up and not down:
            d = 1
        elif down and not up:
            d = -1
        if d != 0:
            brk[i] = d
            if t == d:
                bos[i] = d
            else:
                choch[i] = d
                t = d
            if d > 0:
                last_bull = i
            else:
                last_bear = i
        trend[i] = t
        lbull[i] = last_bull
        lbear[i] = last_bear
    return trend, bos, choch, brk, lbull, lbear


# ---------------------------------------------------------------- liquidity

@njit(cache=True)
def _pool_add(levels, counts, born, npool, price, tol, seq, is_high, max_levels):
    """Add a swing to one side's pools (in place); returns the new pool count."""
    best = -1
    best_d = np.inf
    for k in range(npool):
        d = abs(levels[k] - price)
        if d <= tol and d < best_d:
            best = k
            best_d = d
    if best >= 0:
        counts[best] += 1
        if is_high:
            if price > levels[best]:
                levels[best] = price
        else:
            if price < levels[best]:
                levels[best] = price
        return npool
    if npool == max_levels:
        # drop the oldest pool (smallest creation sequence)
        old = 0
        for k in range(1, npool):
            if born[k] < born[old]:
                old = k
        for k in range(old, npool - 1):
            levels[k] = levels[k + 1]
            counts[k] = counts[k + 1]
            born[k] = born[k + 1]
        npool -= 1
    levels[npool] = price
    counts[npool] = 1
    born[npool] = seq
    return npool + 1


@njit(cache=True)
def liquidity_levels(high, low, close, swing_high, swing_low, atr, tolerance_atr, max_levels):
    """Unswept swing levels as liquidity, with equal highs / lows pooled.

    Confirmed swing highs (``swing_high`` stamped on their confirmation bar) are buy-side
    liquidity, swing lows sell-side. At each bar ``i``, in this order:

    1. sweep: every buy-side pool whose level is strictly below ``high[i]`` is removed
       (``swept_buy_side[i]`` = the highest level removed, NaN if none); mirror for
       sell-side pools with ``low[i]`` (``swept_sell_side[i]`` = the lowest removed);
    2. add the swing confirmed on bar ``i``, if any: if an existing pool of its side lies
       within ``tolerance_atr * atr[i]`` (0 while ``atr[i]`` is NaN, so only identical
       prices pool) it joins the nearest such pool (equal highs / lows): the pool's count
       grows and its level becomes the outermost member (the highest of equal highs, the
       lowest of equal lows); otherwise it opens a new pool. At most ``max_levels`` pools per
       side are kept; opening one more drops the oldest-opened;
    3. report, as known at the close of ``i``: the lowest buy-side level above ``close[i]``,
       the highest sell-side level below it (NaN if none), the number of swings pooled in
       each of those two levels (0 if none), and the number of live pools per side.

    Returns ``(nearest_buy_side, nearest_sell_side, buy_side_eq_count, sell_side_eq_count,
    buy_side_count, sell_side_count, swept_buy_side, swept_sell_side)``.
    """
    n = close.shape[0]
    nbs = np.full(n, np.nan)
    nss = np.full(n, np.nan)
    beq = np.zeros(n, dtype=np.int64)
    seqc = np.zeros(n, dtype=np.int64)
    bcount = np.zeros(n, dtype=np.int64)
    scount = np.zeros(n, dtype=np.int64)
    swb = np.full(n, np.nan)
    sws = np.full(n, np.nan)
    m = max(max_levels, 1)
    blev = np.empty(m)
    bcnt = np.zeros(m, dtype=np.int64)
    bborn = np.zeros(m, dtype=np.int64)
    slev = np.empty(m)
    scnt = np.zeros(m, dtype=np.int64)
    sborn = np.zeros(m, dtype=np.int64)
    nb_ = 0
    ns_ = 0
    seq = 0
    for i in range(n):
        h = high[i]
        lo = low[i]
        # 1. sweeps (compact the arrays, keeping creation order)
        w = 0
        swept = np.nan
        for k in range(nb_):
            if h > blev[k]:
                if np.isnan(swept) or blev[k] > swept:
                    swept = blev[k]
            else:
                blev[w] = blev[k]
                bcnt[w] = bcnt[k]
                bborn[w] = bborn[k]
                w += 1
        nb_ = w
        swb[i] = swept
        w = 0
        swept = np.nan
        for k in range(ns_):
            if lo < slev[k]:
                if np.isnan(swept) or slev[k] < swept:
                    swept = slev[k]
            else:
                slev[w] = slev[k]
                scnt[w] = scnt[k]
                sborn[w] = sborn[k]
                w += 1
        ns_ = w
        sws[i] = swept
        # 2. new confirmed swings
        tol = tolerance_atr * atr[i]
        if not (tol >= 0.0):
            tol = 0.0
        if max_levels > 0:
            if not np.isnan(swing_high[i]):
                nb_ = _pool_add(blev, bcnt, bborn, nb_, swing_high[i], tol, seq, True, m)
                seq += 1
            if not np.isnan(swing_low[i]):
                ns_ = _pool_add(slev, scnt, sborn, ns_, swing_low[i], tol, seq, False, m)
                seq += 1
        # 3. report
        c = close[i]
        best = np.nan
        cnt = 0
        for k in range(nb_):
            if blev[k] > c and (np.isnan(best) or blev[k] < best):
                best = blev[k]
                cnt = bcnt[k]
        nbs[i] = best
        beq[i] = cnt
        best = np.nan
        cnt = 0
        for k in range(ns_):
            if slev[k] < c and (np.isnan(best) or slev[k] > best):
                best = slev[k]
                cnt = scnt[k]
        nss[i] = best
        seqc[i] = cnt
        bcount[i] = nb_
        scount[i] = ns_
    return nbs, nss, beq, seqc, bcount, scount, swb, sws


# ---------------------------------------------------------------- fair value gaps

@njit(cache=True)
def fvg(high, low, threshold):
    """Three-candle fair value gaps stamped on the third candle ``i``.

    Bullish when ``high[i-2] < low[i]`` (zone bottom ``high[i-2]``, top ``low[i]``);
    bearish when ``low[i-2] > high[i]`` (top ``low[i-2]``, bottom ``high[i]``). Kept when
    ``top - bottom >= threshold[i]`` (a price distance; NaN means no gap can be kept), with
    a tolerance of ``PRICE_RTOL * top`` against float rounding. A bar that is both (only
    possible with inconsistent bars) is no signal.

    Returns ``(direction int8, top, bottom)``; top/bottom NaN where no gap.
    """
    n = high.shape[0]
    d = np.zeros(n, dtype=np.int8)
    top = np.full(n, np.nan)
    bot = np.full(n, np.nan)
    for i in range(2, n):
        thr = threshold[i]
        if np.isnan(thr):
            continue
        bull = high[i - 2] < low[i]
        bear = low[i - 2] > high[i]
        if bull and not bear:
            t = low[i]
            b = high[i - 2]
            if t - b >= thr - PRICE_RTOL * abs(t):
                d[i] = 1
                top[i] = t
                bot[i] = b
        elif bear and not bull:
            t = low[i - 2]
            b = high[i]
            if t - b >= thr - PRICE_RTOL * abs(t):
                d[i] = -1
                top[i] = t
                bot[i] = b
    return d, top, bot


@njit(cache=True)
def structure_filter(direction, last_break_bar_bull, last_break_bar_bear, lookback):
    """Keep a setup at bar ``i`` only when a break in its direction happened on one of the
    last ``lookback`` bars ``i - lookback + 1 .. i``; returns a boolean keep mask."""
    n = direction.shape[0]
    keep = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        d = direction[i]
        if d > 0:
            b = last_break_bar_bull[i]
        elif d < 0:
            b = last_break_bar_bear[i]
        else:
            continue
        keep[i] = b >= 0 and b >= i - lookback + 1
    return keep


# ---------------------------------------------------------------- liquidity sweeps

@njit(cache=True)
def liquidity_sweeps(high, low, close, nearest_buy_side, nearest_sell_side, min_wick):
    """Wicks through the previous bar's nearest liquidity that close back inside.

    Short at bar ``i`` when ``L = nearest_buy_side[i-1]`` exists, ``high[i] > L``,
    ``close[i] < L`` and ``high[i] - L >= min_wick`` (price distance, same float tolerance
    as :func:`fvg`); zone top ``high[i]``, bottom ``L``. Long mirror with
    ``nearest_sell_side[i-1]`` and ``low[i]``; zone top ``L``, bottom ``low[i]``. A bar
    sweeping both sides is no signal.

    Returns ``(direction int8, top, bottom)``.
    """
    n = close.shape[0]
    d = np.zeros(n, dtype=np.int8)
    top = np.full(n, np.nan)
    bot = np.full(n, np.nan)
    for i in range(1, n):
        lb = nearest_buy_side[i - 1]
        ls = nearest_sell_side[i - 1]
        short = (not np.isnan(lb)) and high[i] > lb and close[i] < lb \
            and high[i] - lb >= min_wick - PRICE_RTOL * abs(lb)
        long_ = (not np.isnan(ls)) and low[i] < ls and close[i] > ls \
            and ls - low[i] >= min_wick - PRICE_RTOL * abs(ls)
        if short and not long_:
            d[i] = -1
            top[i] = high[i]
            bot[i] = lb
        elif long_ and not short:
            d[i] = 1
            top[i] = ls
            bot[i] = low[i]
    return d, top, bot


# ---------------------------------------------------------------- ADX

@njit(cache=True)
def adx(high, low, close, period):
    """Wilder's directional movement: ``(adx, plus_di, minus_di)``.

    From bar 1 on: ``up = high[i] - high[i-1]``, ``down = low[i-1] - low[i]``;
    ``+DM = up`` if ``up > down and up > 0`` else 0, ``-DM = down`` if ``down > up and
    down > 0`` else 0; ``TR`` the true range. ``TR``, ``+DM`` and ``-DM`` of bars
    ``1..`` are Wilder-smoothed (:func:`~.indicators.wilder`: seeded with the mean of the
    first ``period`` values), so the DIs start at bar ``period``:
    ``+DI = 100 * sm(+DM) / sm(TR)`` (0 when ``sm(TR)`` is 0), likewise ``-DI``;
    ``DX = 100 * |+DI - -DI| / (+DI + -DI)`` (0 when both are 0) and ``ADX`` is the
    Wilder-smoothed DX, first at bar ``2 * period - 1``. NaN during the warm-up.
    """
    n = close.shape[0]
    adx_out = np.full(n, np.nan)
    pdi = np.full(n, np.nan)
    mdi = np.full(n, np.nan)
    if period < 1 or n < period + 1:
        return adx_out, pdi, mdi
    tr = true_range(high, low, close)
    pdm = np.zeros(n)
    mdm = np.zeros(n)
    for i in range(1, n):
        up = high[i] - high[i - 1]
        down = low[i - 1] - low[i]
        if up > down and up > 0.0:
            pdm[i] = up
        if down > up and down > 0.0:
            mdm[i] = down
    str_ = wilder(tr[1:], period)
    spdm = wilder(pdm[1:], period)
    smdm = wilder(mdm[1:], period)
    dx = np.full(n, np.nan)
    for k in range(period - 1, n - 1):
        i = k + 1
        s = str_[k]
        if s > 0.0:
            p = 100.0 * spdm[k] / s
            m = 100.0 * smdm[k] / s
        else:
            p = 0.0
            m = 0.0
        pdi[i] = p
        mdi[i] = m
        tot = p + m
        dx[i] = 100.0 * abs(p - m) / tot if tot > 0.0 else 0.0
    a = wilder(dx[period:], period)
    adx_out[period:] = a
    return adx_out, pdi, mdi
