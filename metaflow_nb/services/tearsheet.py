"""The numbers of a run's tear sheet, as DataFrames: no plotting, no HTML.

Conventions (the README's "Tear sheet" states them too):

- Returns are the run's **daily returns** as the metrics compute them
  (:func:`metaflow_nb.engine.metrics.daily_returns`): the equity at each trading day's last
  bar of the operation's ``data.calendar``, the first day against the starting cash.
  Months and years compound those days by their trading-day label.
- Rolling Sharpe ratio and volatility use a window of half a year of trading days of that
  calendar (:func:`rolling_window`: 126 on ``exchange``, 130 on ``fx_24x5``), the sample
  standard deviation (ddof 1), risk-free rate 0, annualised by sqrt(P) with P the trading
  days a year of the calendar (:func:`metaflow_nb.engine.metrics.periods_per_year`), as
  the run's Sharpe ratio is.
- Drawdowns are measured on the equity at every bar, the starting cash being the first
  peak, as ``max_drawdown_pct`` is: the deepest one's depth is that metric. A drawdown
  starts at its peak (the last bar at the high), bottoms at its trough and recovers at the
  first bar back at or above the peak (none while still under water).
- Costs paid: commission is what the kernel charged (the trades' ``commission``, both
  sides); slippage is what the fills paid against their unslipped price. Market entries
  and the exits at a stop, a signal, the time stop, the session end and the end of the
  data pay slippage; limit entries, take-profits and partial take-profits do not.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

from ..engine import codes
from ..engine import metrics as _metrics
from ..engine.nb.metrics import max_drawdown
from .formatting import format_metric

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: exit reasons whose fill pays no slippage (limit fills at a take-profit level, and the
#: liquidation at the close of a run out of money); every other exit is a market or stop
#: fill that pays it, an exit planner's own exit reason too (it fills as EXIT_CONDITION
#: does). Named from the kernel's codes so that a renamed reason cannot slip into the count.
UNSLIPPED_EXITS = frozenset(codes.REASON_NAMES[k] for k in (
    codes.EXIT_TAKE_PROFIT, codes.EXIT_PARTIAL, codes.EXIT_OUT_OF_MONEY))


def daily_returns(res: Any) -> pd.Series:
    """The run's daily returns (fractions), labelled by trading day, as its metrics use them.

    >>> import metaflow_nb as mf
    >>> r = daily_returns(mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily"))
    >>> r.name, bool(r.index.is_monotonic_increasing)
    ('daily_return', True)
    """
    return _metrics.daily_returns(res.equity, res.specs.cash, res.specs.data_calendar)


def periods_per_year(res: Any) -> float:
    """Trading days a year of the run's calendar (declared, or measured from its bars).

    >>> import metaflow_nb as mf
    >>> periods_per_year(mf.backtest("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml"))
    252.0
    """
    return _metrics.periods_per_year(res.equity.index, res.specs.data_calendar)


def rolling_window(periods: float) -> int:
    """Days in the rolling window: half a year of the calendar's trading days.

    >>> rolling_window(252.0), rolling_window(260.0), rolling_window(365.0)
    (126, 130, 182)
    """
    return max(2, int(round(periods / 2.0)))


def monthly_returns(daily: pd.Series) -> pd.DataFrame:
    """Compounded returns (%) per month: one row per year, ``Jan`` .. ``Dec`` and ``Year``
    (the year compounded); months without trading days are empty (NaN).

    >>> r = pd.Series([0.1, 0.1, -0.5], index=pd.to_datetime(["2024-01-02", "2024-01-03", "2024-03-01"]))
    >>> m = monthly_returns(r).round(2)
    >>> float(m.loc[2024, "Jan"]), float(m.loc[2024, "Mar"]), float(m.loc[2024, "Year"])
    (21.0, -50.0, -39.5)
    """
    if daily.empty:
        return pd.DataFrame(columns=[*MONTHS, "Year"], dtype="float64")
    growth = 1.0 + daily.astype("float64")
    idx = pd.DatetimeIndex(daily.index)
    months = growth.groupby([idx.year, idx.month]).prod() - 1.0
    table = (months * 100.0).unstack()
    table = table.reindex(columns=range(1, 13))
    table.columns = list(MONTHS)
    table["Year"] = (growth.groupby(idx.year).prod() - 1.0) * 100.0
    table.index.name = "year"
    return table


def yearly_returns(daily: pd.Series, equity: Optional[pd.Series] = None,
                   start_value: Optional[float] = None) -> pd.DataFrame:
    """Per calendar year of trading days: return (%), trading days, and the deepest
    drawdown (%) inside the year when the bar ``equity`` is given. A year's return runs
    from the equity the year before ended with, so its drawdown's first peak is that
    equity (``start_value``, the starting cash, for the first year; else its first bar).

    >>> r = pd.Series([0.1, -0.5], index=pd.to_datetime(["2023-12-29", "2024-01-02"]))
    >>> yearly_returns(r)["return_pct"].round(1).tolist()
    [10.0, -50.0]
    >>> e = pd.Series([110.0, 55.0, 66.0], index=pd.to_datetime(["2023-12-29", "2024-01-02", "2024-01-03"]))
    >>> yearly_returns(r, e, start_value=100.0)["max_drawdown_pct"].tolist()   # 110 -> 55 on 2024's first day
    [0.0, 50.0]
    """
    idx = pd.DatetimeIndex(daily.index)
    growth = 1.0 + daily.astype("float64")
    out = pd.DataFrame({"return_pct": (growth.groupby(idx.year).prod() - 1.0) * 100.0,
                        "days": growth.groupby(idx.year).size().astype("int64")})
    if equity is not None and len(equity):
        values = equity.to_numpy(np.float64)
        years = pd.DatetimeIndex(equity.index).year.to_numpy()
        first = np.flatnonzero(np.r_[True, years[1:] != years[:-1]])
        # each year's opening peak: the last equity of the year before
        opening = np.r_[values[0] if start_value is None else float(start_value), values[first[1:] - 1]]
        ends = np.r_[first[1:], len(values)]
        # the run's own drawdown measure (max_drawdown_pct), each year from its opening peak;
        # a year that opens ruined (equity 0: trading stopped) has nothing left to fall
        out["max_drawdown_pct"] = pd.Series({
            int(years[lo]): float(max_drawdown(values[lo:hi], 0, opening[k])) * 100.0 if opening[k] > 0 else 0.0
            for k, (lo, hi) in enumerate(zip(first, ends))})
    out.index.name = "year"
    return out


def drawdown_periods(equity: pd.Series, top: int = 5, start_value: Optional[float] = None) -> pd.DataFrame:
    """The ``top`` deepest drawdowns of ``equity``, deepest first: ``start`` (the peak),
    ``trough``, ``recovery`` (NaT while under water), ``depth_pct`` (positive),
    ``bars`` (peak to recovery, or to the last bar) and ``days`` (calendar days likewise).
    ``start_value`` (the starting cash) is the first peak when given.

    >>> e = pd.Series([100., 90., 100., 120., 60., 130.], index=pd.date_range("2024-01-01", periods=6))
    >>> drawdown_periods(e)[["depth_pct", "bars", "days"]].to_dict("records")
    [{'depth_pct': 50.0, 'bars': 2, 'days': 2}, {'depth_pct': 10.0, 'bars': 2, 'days': 2}]
    """
    cols = ["start", "trough", "recovery", "depth_pct", "bars", "days"]
    if equity.empty:
        return pd.DataFrame(columns=cols)
    values = equity.to_numpy(np.float64)
    times = pd.DatetimeIndex(equity.index)
    n = values.shape[0]
    peak = np.maximum.accumulate(values)
    if start_value is not None:
        peak = np.maximum(peak, float(start_value))
    under = values < peak
    rows = []
    i = 0
    while i < n:
        if not under[i]:
            i += 1
            continue
        j = i
        while j < n and under[j]:
            j += 1
        # bars i..j-1 are under water; j (if < n) is the recovery bar
        seg = values[i:j]
        k = i + int(np.argmin(seg))
        top_value = peak[i]
        first = i - 1 if i > 0 else 0   # 0: under the starting cash from the first bar on
        end = j if j < n else n - 1
        rows.append({"start": times[first], "trough": times[k],
                     "recovery": times[j] if j < n else pd.NaT,
                     "depth_pct": (top_value - values[k]) / top_value * 100.0,
                     "bars": end - first, "days": int((times[end] - times[first]).days)})
        i = j
    frame = pd.DataFrame(rows, columns=cols)
    if frame.empty:
        return frame
    frame = frame.sort_values("depth_pct", ascending=False, kind="stable").head(top).reset_index(drop=True)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
    return frame


def rolling_sharpe(daily: pd.Series, window: int, periods: float) -> pd.Series:
    """Sharpe ratio of the last ``window`` daily returns (mean / sample std * sqrt(P),
    risk-free 0); NaN until the window is full or where the returns do not move.

    >>> r = pd.Series([0.01, -0.01, 0.02, 0.0])
    >>> round(float(rolling_sharpe(r, 3, 252.0).iloc[-1]), 3)
    3.464
    """
    roll = daily.astype("float64").rolling(window, min_periods=window)
    sd = roll.std(ddof=1)
    return (roll.mean() / sd.where(sd > 0) * math.sqrt(periods)).rename("rolling_sharpe")


def rolling_volatility(daily: pd.Series, window: int, periods: float) -> pd.Series:
    """Annualised volatility (%) of the last ``window`` daily returns (sample std * sqrt(P)).

    >>> r = pd.Series([0.01, -0.01, 0.01])
    >>> round(float(rolling_volatility(r, 3, 252.0).iloc[-1]), 2)
    18.33
    """
    sd = daily.astype("float64").rolling(window, min_periods=window).std(ddof=1)
    return (sd * math.sqrt(periods) * 100.0).rename("rolling_volatility_pct")


def buy_and_hold(res: Any) -> pd.Series:
    """The starting cash held in the instrument from the run's first bar (at its close, no
    costs), at every bar's close: the benchmark of the equity chart (empty when the result
    carries no bars).

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> bool(buy_and_hold(res).iloc[0] == res.specs.cash)
    True
    """
    if res.data is None or res.equity.empty:
        return pd.Series(dtype="float64", name="buy_and_hold")
    close = res.data["close"].reindex(res.equity.index)
    return (res.specs.cash * close / float(close.iloc[0])).rename("buy_and_hold")


def _stats(t: pd.DataFrame) -> dict[str, Any]:
    pnl = t["pnl"].astype("float64")
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_loss = float(-losses.sum())
    return {
        "trades": int(len(t)),
        "win_rate_pct": float((pnl > 0).mean() * 100.0) if len(t) else math.nan,
        "net_pnl": float(pnl.sum()),
        "avg_pnl": float(pnl.mean()) if len(t) else math.nan,
        "avg_win": float(wins.mean()) if len(wins) else math.nan,
        "avg_loss": float(losses.mean()) if len(losses) else math.nan,
        "best_trade": float(pnl.max()) if len(t) else math.nan,
        "worst_trade": float(pnl.min()) if len(t) else math.nan,
        "profit_factor": (float(wins.sum()) / gross_loss if gross_loss > 0
                          else (math.inf if len(wins) else math.nan)),
        "avg_return_pct": float(t["return_pct"].mean()) if len(t) else math.nan,
        "avg_duration_bars": float(t["duration_bars"].mean()) if len(t) else math.nan,
        "commission_paid": float(t["commission"].sum()),
    }


def trade_stats(trades: pd.DataFrame) -> pd.DataFrame:
    """Trade statistics for all trades and split into long and short: one row per
    statistic (``trades``, ``win_rate_pct``, ``net_pnl``, ``avg_pnl``, ``avg_win``,
    ``avg_loss``, ``best_trade``, ``worst_trade``, ``profit_factor``, ``avg_return_pct``,
    ``avg_duration_bars``, ``commission_paid``), columns ``all``, ``long``, ``short``.

    >>> t = pd.DataFrame({"direction": ["long", "short", "long"], "pnl": [10.0, -5.0, -2.0],
    ...                   "return_pct": [1.0, -0.5, -0.2], "duration_bars": [3, 4, 5], "commission": [0.1] * 3})
    >>> trade_stats(t).loc[["trades", "net_pnl", "profit_factor"]].to_dict()["long"]
    {'trades': 2, 'net_pnl': 8.0, 'profit_factor': 5.0}
    """
    cols = {"all": trades, "long": trades[trades["direction"] == "long"],
            "short": trades[trades["direction"] == "short"]}
    return pd.DataFrame({k: pd.Series(_stats(v), dtype=object) for k, v in cols.items()})


@dataclass(frozen=True)
class Costs:
    """What the operation charges (fractions) and what the run paid (account currency)."""

    commission_rate: float
    slippage_rate: float
    commission_paid: float = 0.0
    slippage_paid: float = 0.0
    slipped_fills: int = 0
    #: positions still open after the last bar (finalize_trades off): their entry costs are
    #: in the equity, but the trades table, which the sums read, has closed trades only
    open_at_end: int = 0

    @property
    def free(self) -> bool:
        """True when the operation charges neither commission nor slippage (reports say so aloud).

        >>> Costs(0.0, 0.0).free, Costs(0.001, 0.0).free
        (True, False)
        """
        return self.commission_rate == 0.0 and self.slippage_rate == 0.0

    def text(self) -> str:
        """One line for summaries; zero costs said out loud.

        >>> Costs(0.0, 0.0).text()
        'costs: none (commission 0, slippage 0)'
        >>> Costs(0.002, 0.0, 1234.5).text()
        'costs: commission 0.2 % per side (paid 1,234.50), slippage 0'
        >>> Costs(0.002, 0.0, 1234.5, open_at_end=1).text()
        'costs: commission 0.2 % per side (paid 1,234.50), slippage 0; paid by closed trades (1 position open at the end)'
        """
        return costs_text(self.commission_rate, self.slippage_rate,
                          None if self.free else self.commission_paid, None if self.free else self.slippage_paid,
                          self.open_at_end)

    def _repr_html_(self) -> str:
        import html
        return f"<p class='mf-costs'>{html.escape(self.text())}</p>"

    def frame(self) -> pd.DataFrame:
        """The costs as a two-row table (rate, paid) for pages."""
        by = " (closed trades)" if self.open_at_end and not self.free else ""
        return pd.DataFrame({"rate": [f"{_pct(self.commission_rate)} per side", _pct(self.slippage_rate)],
                             "paid": [format_metric("commission_paid", self.commission_paid) + by,
                                      format_metric("slippage_paid", self.slippage_paid) + by]},
                            index=pd.Index(["commission", "slippage"], name="cost"))


def _pct(rate: float) -> str:
    return "0" if rate == 0 else f"{rate * 100:.4g} %"


def costs_text(commission: float, slippage: float, commission_paid: Optional[float] = None,
               slippage_paid: Optional[float] = None, open_at_end: int = 0) -> str:
    """The costs line of every summary: the rates, and what was paid when known (by the
    closed trades: ``open_at_end`` positions still open have paid their entry too).

    >>> costs_text(0.0, 0.0)
    'costs: none (commission 0, slippage 0)'
    >>> costs_text(0.00002, 0.0005)
    'costs: commission 0.002 % per side, slippage 0.05 %'
    """
    if commission == 0 and slippage == 0:
        return "costs: none (commission 0, slippage 0)"
    c = f"commission {_pct(commission)} per side" if commission else "commission 0"
    s = f"slippage {_pct(slippage)}" if slippage else "slippage 0"
    if commission_paid is not None and commission:
        c += f" (paid {format_metric('commission_paid', commission_paid)})"
    if slippage_paid is not None and slippage:
        s += f" (paid {format_metric('slippage_paid', slippage_paid)})"
    line = f"costs: {c}, {s}"
    if open_at_end and (commission_paid is not None or slippage_paid is not None):
        line += f"; paid by closed trades ({open_at_end} position{'' if open_at_end == 1 else 's'} open at the end)"
    return line


def specs_costs_text(named_specs: Mapping[str, Any]) -> str:
    """The costs line of several runs (variants, windows, a basket's symbols): one line when
    they share their costs, else one entry per set of runs that share them.

    >>> from types import SimpleNamespace as S
    >>> specs_costs_text({"a": S(commission=0.0, slippage=0.0), "b": S(commission=0.0, slippage=0.0)})
    'costs: none (commission 0, slippage 0)'
    >>> specs_costs_text({"a": S(commission=0.0, slippage=0.0), "b": S(commission=0.001, slippage=0.0)})
    'costs: a: none (commission 0, slippage 0); b: commission 0.1 % per side, slippage 0'
    >>> specs_costs_text({k: S(commission=0.002 if k == "G" else 0.001, slippage=0.0) for k in "AGIM"})
    'costs: A, I, M: commission 0.1 % per side, slippage 0; G: commission 0.2 % per side, slippage 0'
    """
    groups: dict[tuple[float, float], list[str]] = {}
    for k, v in named_specs.items():
        groups.setdefault((float(v.commission), float(v.slippage)), []).append(str(k))
    if len(groups) <= 1:
        c, s = next(iter(groups), (0.0, 0.0))
        return costs_text(c, s)
    return "costs: " + "; ".join(f"{', '.join(ks)}: {costs_text(c, s).removeprefix('costs: ')}"
                                 for (c, s), ks in groups.items())


def costs(res: Any) -> Costs:
    """The operation's commission and slippage and what the run's trades paid of each.

    >>> import metaflow_nb as mf
    >>> c = costs(mf.backtest("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml"))
    >>> c.commission_rate, c.commission_paid > 0, c.slippage_paid
    (0.002, True, 0.0)
    """
    specs, t = res.specs, res.trades
    s = float(specs.slippage)
    paid_c = float(t["commission"].sum()) if len(t) else 0.0
    position = getattr(res, "position", None)
    open_end = int(position is not None and len(position) > 0 and position.iloc[-1] != 0.0)
    if s == 0.0 or t.empty:
        return Costs(float(specs.commission), s, paid_c, 0.0, 0, open_end)
    d = np.where(t["direction"].to_numpy() == "long", 1.0, -1.0)
    size = t["size"].to_numpy(np.float64)
    entry = t["entry_price"].to_numpy(np.float64)
    exit_ = t["exit_price"].to_numpy(np.float64)
    if res.data is None:   # without the bars, entries cannot be told apart: market ones assumed
        opens = entry / (1.0 + d * s)
    else:
        opens = res.data["open"].to_numpy(np.float64)[t["entry_bar"].to_numpy(np.int64)]
    # a market entry fills at the bar's open times (1 + d s); a limit at its level or a better open
    market = np.isclose(entry, opens * (1.0 + d * s), rtol=1e-12, atol=0.0)
    slipped_exit = ~t["exit_reason"].isin(UNSLIPPED_EXITS).to_numpy()
    paid = (np.where(market, size * entry * s / (1.0 + d * s), 0.0).sum()
            + np.where(slipped_exit, size * exit_ * s / (1.0 - d * s), 0.0).sum())
    return Costs(float(specs.commission), s, paid_c, float(paid), int(market.sum() + slipped_exit.sum()), open_end)


def parameters(specs: Any, overrides: Optional[Mapping[str, Mapping[str, Any]]] = None) -> pd.DataFrame:
    """Every worker instance's resolved parameters (``instance``, ``plugin``, ``param``,
    ``value``) and ``set_by``: ``override`` for the ones ``overrides`` set, ``config`` for
    the ones the config writes, else ``default`` (the plugin's own value).

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> parameters(specs, {"sma_1": {"fast": 10}}).iloc[0].tolist()
    ['sma_1', 'sma_cross', 'fast', '10', 'override']
    >>> parameters(specs).set_index(["instance", "param"]).loc[("size_1", "whole_units"), "set_by"]
    'default'
    """
    over = overrides or {}
    # the params a config wrote, from each validated model: a plugin's default was read as
    # written in the config too (hunt103 F4)
    written = {e.instance_id: e.model.model_fields_set for e in specs.entries()}
    rows = []
    for w in specs.workers():
        for k, v in sorted(w["params"].items()):
            by = ("override" if k in over.get(w["instance_id"], {}) else
                  "config" if k in written.get(w["instance_id"], ()) else "default")
            rows.append({"instance": w["instance_id"], "plugin": w["plugin"], "param": k, "value": _value_text(v),
                         "set_by": by})
    return pd.DataFrame(rows, columns=["instance", "plugin", "param", "value", "set_by"])


def _value_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


@dataclass
class TearSheet:
    """Every table of a run's tear sheet (see the module's conventions)."""

    daily: pd.Series
    periods_per_year: float
    window: int
    monthly: pd.DataFrame
    yearly: pd.DataFrame
    drawdowns: pd.DataFrame
    rolling_sharpe: pd.Series
    rolling_volatility: pd.Series
    benchmark: pd.Series
    trades: pd.DataFrame
    costs: Costs
    parameters: pd.DataFrame

    def __repr__(self) -> str:
        # the dataclass repr printed every Series and table inline
        return (f"TearSheet({len(self.daily)} days, {self.periods_per_year:.1f} a year, rolling window "
                f"{self.window}, {len(self.yearly)} years, {len(self.drawdowns)} drawdowns; {self.costs.text()})")

    def _repr_html_(self) -> str:
        """The tables (monthly and yearly returns, worst drawdowns, trade statistics, costs,
        parameters); the figures are on the run's page (``res.report()``)."""
        import html

        def section(title: str, frame: pd.DataFrame) -> str:
            return (f"<h4>{html.escape(title)}</h4><div style='overflow-x:auto'>"
                    f"{frame.to_html(escape=True, float_format=lambda v: f'{v:.2f}', na_rep='')}</div>")

        return ("<div class='mf-tearsheet'>" + section("Monthly returns (%)", self.monthly)
                + section("Yearly returns", self.yearly) + section("Worst drawdowns", self.drawdowns)
                + section("Trade statistics", self.trades) + section("Costs", self.costs.frame())
                + section("Parameters", self.parameters) + "</div>")


def tearsheet(res: Any, overrides: Optional[Mapping[str, Mapping[str, Any]]] = None, top: int = 5) -> TearSheet:
    """The tear sheet of a :class:`~metaflow_nb.services.results.BacktestResult`.

    >>> import metaflow_nb as mf
    >>> ts = tearsheet(mf.backtest("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml"))
    >>> ts.window, list(ts.trades.columns), len(ts.drawdowns) <= 5
    (126, ['all', 'long', 'short'], True)
    """
    daily = daily_returns(res)
    ppy = periods_per_year(res)
    window = rolling_window(ppy)
    return TearSheet(daily, ppy, window, monthly_returns(daily), yearly_returns(daily, res.equity, res.specs.cash),
                     drawdown_periods(res.equity, top, start_value=res.specs.cash),
                     rolling_sharpe(daily, window, ppy), rolling_volatility(daily, window, ppy),
                     buy_and_hold(res), trade_stats(res.trades), costs(res), parameters(res.specs, overrides))
