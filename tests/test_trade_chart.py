"""The trade chart (#20 part 6): candlesticks, the strategy's context features (over the
price or in panels) and every trade reachable by page. Checked against the bars, the
trades and an EMA written here in plain Python, not against stored pictures."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection, PolyCollection

import metaflow_nb as mf
from metaflow_nb.errors import ConfigError


@pytest.fixture(scope="module")
def sma():
    return mf.backtest("config/runs/sma_cross.yaml", data=mf.load_data("sp500_daily")[-700:])


@pytest.fixture(scope="module")
def ict():
    return mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml", end="2022-11-15")


def _window(fig):
    x = fig.axes[0].get_lines()[0].get_xdata()   # the close line spans the bars shown
    return int(x[0]), int(x[-1]) + 1


def test_every_trade_is_on_a_page_and_its_bars_are_shown(sma):
    from metaflow_nb.services.plots import trade_pages
    t = sma.trades
    per = 4
    pages = trade_pages(sma, per)
    assert pages == -(-len(t) // per) and len(t) > 2 * per
    seen = []
    for k in range(pages):
        fig = sma.plot("trades", page=k, trades_per_page=per, margin=5, features=False)
        i0, i1 = _window(fig)
        mine = t.sort_values("entry_bar").iloc[k * per:(k + 1) * per]
        assert i0 == max(0, mine["entry_bar"].min() - 5) and i1 == min(len(sma.data), mine["exit_bar"].max() + 6)
        entries = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)
                   and c.get_label().endswith("entry")]
        xs = sorted(int(v) for c in entries for v in c.get_offsets()[:, 0])
        assert set(mine["entry_bar"]) <= set(xs)
        assert f"(page {k + 1} of {pages})" in fig.axes[0].get_title()
        seen += list(mine["trade_id"])
    assert sorted(seen) == sorted(t["trade_id"])
    last = sma.plot("trades", page=-1, trades_per_page=per, margin=5, features=False)
    assert _window(last) == _window(sma.plot("trades", page=pages - 1, trades_per_page=per, margin=5,
                                             features=False))
    with pytest.raises(ConfigError, match=rf"page {pages}: this run has {pages} page\(s\) of {per} trades"):
        sma.plot("trades", page=pages, trades_per_page=per)
    with pytest.raises(ValueError, match="without start=/end="):
        sma.plot("trades", page=0, start=10)


def test_candles_are_the_bars(sma):
    fig = sma.plot("trades", start=-60, end=len(sma.data), features=False)
    ax = fig.axes[0]
    bars = sma.data.iloc[-60:]
    wicks = [c for c in ax.collections if isinstance(c, LineCollection) and c.get_label() == "_candle wicks"][0]
    bodies = [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_label() == "_candle bodies"][0]
    segs = wicks.get_segments()
    assert len(segs) == len(bodies.get_paths()) == 60
    np.testing.assert_allclose([s[0][1] for s in segs], bars["low"])
    np.testing.assert_allclose([s[1][1] for s in segs], bars["high"])
    for path, (_, bar) in zip(bodies.get_paths(), bars.iterrows()):
        ys = path.vertices[:4, 1]
        if bar["open"] != bar["close"]:
            assert ys.min() == pytest.approx(min(bar["open"], bar["close"]))
            assert ys.max() == pytest.approx(max(bar["open"], bar["close"]))
    up = (bars["close"] >= bars["open"]).to_numpy()
    colours = wicks.get_colors()
    assert len({tuple(c) for c in colours[up]}) == 1 and len({tuple(c) for c in colours[~up]}) == 1
    assert tuple(colours[up][0]) != tuple(colours[~up][0])
    # a window of more bars than max_candles keeps only the close line
    many = sma.plot("trades", last=400, max_candles=300, features=False)
    assert not [c for c in many.axes[0].collections if c.get_label().startswith("_candle")]


def test_context_features_over_the_price_and_in_panels(ict):
    fig = ict.plot("trades", last=300)
    assert [a.get_ylabel() for a in fig.axes] == ["Price", "atr_1", "adx_1"]
    ax = fig.axes[0]
    n = len(ict.data)
    ema_line = next(l for l in ax.get_lines() if l.get_label() == "ema_1.ema")
    # the EMA the ICT blueprint configures (period 50), written here: SMA seed, then the recursion
    close = ict.data["close"].to_numpy()
    period = ict.specs.params("ema_1")["period"]
    alpha = 2.0 / (period + 1)
    ema = np.full(n, np.nan)
    ema[period - 1] = close[:period].mean()
    for i in range(period, n):
        ema[i] = alpha * close[i] + (1 - alpha) * ema[i - 1]
    np.testing.assert_allclose(ema_line.get_ydata(), ema[n - 300:], rtol=1e-12)
    adx_panel = {l.get_label() for l in fig.axes[2].get_lines()}
    assert adx_panel == {"adx", "plus_di", "minus_di"}
    only = ict.plot("trades", last=300, features=["adx_1"])
    assert [a.get_ylabel() for a in only.axes] == ["Price", "adx_1"]
    assert "ema_1.ema" not in {l.get_label() for l in only.axes[0].get_lines()}
    with pytest.raises(ValueError, match="no context worker rsi_9; context workers: structure_1"):
        ict.plot("trades", features=["rsi_9"])


def test_a_run_too_short_to_draw_says_so_not_a_window_of_nones():
    """hunt73 F5: plot('trades') of a one-bar run said 'the window None .. None holds 1
    bars', though no window was asked for."""
    import pandas as pd

    from metaflow_nb.errors import ConfigError
    from metaflow_nb.services.plots import _window

    one = pd.DatetimeIndex(["2024-01-02"])
    with pytest.raises(ConfigError, match=r"^the run has 1 bar \(2024-01-02 00:00:00\); a price chart needs at least 2$"):
        _window(one, None, None, None)
