"""Result objects of single runs; meta-workflow results live beside their services."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pandas as pd

from ..config.buildspecs import BuildSpecs
from .formatting import (  # noqa: F401  (re-exported: the names results were shown with before)
    METRIC_LABELS, format_metric, json_safe, metrics_table_html, metrics_table_text,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .tearsheet import Costs, TearSheet

@dataclass
class BacktestResult:
    """The outcome of one backtest.

    ``metrics`` (dict), ``trades`` and ``journal`` (DataFrames built from the kernel's
    records on first access), ``equity`` and ``position`` (Series at every bar's close,
    simulated again on first access: a run keeps no array per bar until asked), the
    ``specs`` it ran and ``timings``.

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> res.name, res.metrics["total_trades"], len(res.trades), res.equity.index.equals(res.data.index)
    ('sma_cross', 260, 260, True)
    """

    specs: BuildSpecs
    metrics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    data: Optional[pd.DataFrame] = field(default=None, repr=False)
    context: Any = field(default=None, repr=False)
    records: Any = field(default=None, repr=False)  # (SimulationOutput, opportunity worker ids)
    first_bar: int = 0  # bars before it only warmed indicators up (data.trade_start)

    @cached_property
    def equity(self) -> pd.Series:
        """Equity at every bar's close (from ``data.trade_start`` on, when set)."""
        return self._per_bar(self.records[0].equity, "equity")

    @cached_property
    def position(self) -> pd.Series:
        """Signed units held at every bar's close."""
        return self._per_bar(self.records[0].position, "position")

    def _per_bar(self, values: Any, name: str) -> pd.Series:
        first = self.first_bar
        index = self.records[0].index
        # the whole index itself when no bars are cut: it has its sortedness cached; the
        # kernel's arrays belong to this run alone, so the series wrap them without a copy
        return pd.Series(values[first:], index=index[first:] if first else index, name=name, copy=False)

    @cached_property
    def trades(self) -> pd.DataFrame:
        """One row per closed trade, linked to its opportunity by ``opportunity_id``."""
        from ..assembly.frames import trades_frame
        return trades_frame(self.records[0])

    @cached_property
    def journal(self) -> pd.DataFrame:
        """Every detection, rejection (threat and reason), order and trade event."""
        from ..assembly.frames import journal_frame
        return journal_frame(*self.records)

    @property
    def run_id(self) -> str:
        """The run's id: 16 hex digits of its specs' hash (same blueprint, operation and data,
        same id)."""
        return self.specs.run_id

    @property
    def name(self) -> str:
        """The blueprint's name."""
        return self.specs.name

    def rejections(self) -> pd.DataFrame:
        """Rejected opportunities per reason: count and share of all rejections in %, to
        two decimals (a share of a few hundred counts has no meaningful third; the counts
        are exact).

        ``count`` is the rejections a reason decided (the first threat active, in workforce
        order: its ``reason`` in the journal); ``active`` those in which it was active at
        all (``active_reasons``), so a filter ordered behind another is not read as firing
        less. A reason that was active but never first has a count of 0.

        >>> import metaflow_nb as mf
        >>> rej = mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml").rejections()
        >>> rej["count"].tolist(), rej["share_pct"].tolist(), rej["active"].tolist()
        ([127, 86, 35], [51.21, 34.68, 14.11], [130, 116, 35])
        """
        return rejection_counts(self.journal)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: run id, metrics (non-finite as None), trade count.

        >>> import metaflow_nb as mf
        >>> d = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily").to_dict()
        >>> d["name"], d["trades"], round(d["metrics"]["total_return_pct"], 2)
        ('sma_cross', 260, -48.63)
        """
        return {"run_id": self.run_id, "name": self.name, "metrics": json_safe(self.metrics),
                "trades": int(len(self.trades))}

    def plot(self, kind: str = "equity", **kwargs: Any) -> "Figure":
        """Matplotlib figure: ``"equity"`` (equity with drawdown underneath) or ``"trades"``
        (price with trades, stops/targets and setup zones). Returns the Figure.

        >>> import metaflow_nb as mf
        >>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> [ax.get_ylabel() for ax in res.plot().axes]
        ['Equity', 'Drawdown (%)']
        """
        from . import plots  # matplotlib, only when a figure is asked for
        return plots.plot_backtest(self, kind=kind, **kwargs)

    def costs(self) -> "Costs":
        """The operation's commission and slippage and what this run paid of each
        (:class:`~metaflow_nb.services.tearsheet.Costs`; ``.text()`` is the summary line).

        >>> import metaflow_nb as mf
        >>> c = mf.backtest("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml").costs()
        >>> c.commission_rate, c.commission_paid > 0, c.text().split(" (paid")[0]
        (0.002, True, 'costs: commission 0.2 % per side')
        """
        from .tearsheet import costs
        return costs(self)

    def tearsheet(self, overrides: Optional[dict[str, Any]] = None) -> "TearSheet":
        """The tear sheet's tables (:class:`~metaflow_nb.services.tearsheet.TearSheet`):
        monthly and yearly returns, worst drawdowns, rolling Sharpe and volatility,
        buy-and-hold, trade statistics (long/short), costs and parameters.

        >>> import metaflow_nb as mf
        >>> ts = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily").tearsheet()
        >>> ts.yearly.loc[2000:2001, "return_pct"].round(2).tolist(), len(ts.drawdowns)
        ([-31.17, 37.06], 5)
        """
        from .tearsheet import tearsheet
        return tearsheet(self, overrides)

    def report(self, path: Optional[str | Path] = None, *, title: Optional[str] = None,
               overrides: Optional[dict[str, Any]] = None, log: bool = False) -> Path:
        """Write this run's tear sheet as one self-contained, offline HTML page and its trades
        as ``<page>_trades.csv`` beside it; returns the page's path. ``path``: an ``.html``
        file or a folder (default ``reports/`` under the working directory); ``log``: the
        equity chart on a log scale.

        >>> import metaflow_nb as mf, tempfile
        >>> res = mf.backtest("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")
        >>> page = res.report(tempfile.mkdtemp())
        >>> page.suffix, page.with_name(page.stem + "_trades.csv").is_file()
        ('.html', True)
        """
        from .tearsheet_page import write_page  # matplotlib, only when a page is written
        return write_page(self, path, title=title, overrides=overrides, log=log)

    def __repr__(self) -> str:
        return (f"BacktestResult({self.name!r}, run_id={self.run_id}, bars={len(self.equity)})\n"
                + metrics_table_text(self.metrics) + "\n" + self.costs().text())

    def _repr_html_(self) -> str:
        return (f"<div class='mf-result'><b>{html.escape(self.name)}</b> "
                f"<code>{self.run_id}</code> &middot; {len(self.equity)} bars "
                f"{self.equity.index[0]:%Y-%m-%d} &rarr; {self.equity.index[-1]:%Y-%m-%d}"
                + metrics_table_html(self.metrics)
                + f"<p class='mf-costs'>{html.escape(self.costs().text())}</p></div>")


def setup_key(*frames: pd.DataFrame) -> list[str]:
    """The columns that name one setup across ``frames`` (a journal, a trades table): a
    basket's instruments each number their opportunities from 0, so there it is the symbol
    and the opportunity id, else the id alone.

    >>> basket, single = pd.DataFrame(columns=["symbol", "opportunity_id"]), pd.DataFrame(columns=["opportunity_id"])
    >>> setup_key(basket), setup_key(basket, single)
    (['symbol', 'opportunity_id'], ['opportunity_id'])
    """
    return ["symbol", "opportunity_id"] if all("symbol" in f.columns for f in frames) else ["opportunity_id"]


def rejection_counts(journal: pd.DataFrame, by_symbol: bool = False) -> pd.DataFrame:
    """Rejected opportunities of a journal per reason (per symbol and reason with
    ``by_symbol``): ``count`` (the reason decided: the journal's ``reason``), ``share_pct``
    (of all rejections, two decimals) and ``active`` (rejections with the reason among
    ``active_reasons``). Most counted first; reasons active but never deciding last.

    >>> j = pd.DataFrame({"event": ["OPPORTUNITY_REJECTED"] * 3 + ["TRADE_OPENED"],
    ...                   "reason": ["A", "A", "B", ""], "active_reasons": ["A|C", "A|B", "B", ""]})
    >>> rejection_counts(j).to_dict(orient="index")
    {'A': {'count': 2, 'share_pct': 66.67, 'active': 2}, 'B': {'count': 1, 'share_pct': 33.33, 'active': 2}, \
'C': {'count': 0, 'share_pct': 0.0, 'active': 1}}
    """
    rej = journal[journal["event"] == "OPPORTUNITY_REJECTED"]
    keys = ["symbol", "reason"] if by_symbol else ["reason"]
    if by_symbol:
        counts = rej.groupby(keys, sort=False).size().sort_values(ascending=False, kind="stable")
    else:
        counts = rej["reason"].value_counts()
    each = rej[keys[:-1] + ["active_reasons"]].assign(reason=rej["active_reasons"].str.split("|"))
    each = each.explode("reason")
    active = each[each["reason"].fillna("") != ""].groupby(keys, sort=False).size()
    extra = [k for k in active.index if k not in counts.index]
    if extra:
        more = pd.Series(0, index=pd.MultiIndex.from_tuples(extra, names=keys) if by_symbol else
                         pd.Index(extra, name="reason"), dtype="int64")
        counts = pd.concat([counts, more])
    total = int(counts.sum())
    share = (counts / total * 100.0) if total else counts.astype(float)
    return pd.DataFrame({"count": counts.astype(int), "share_pct": share.round(2),
                         "active": active.reindex(counts.index).fillna(0).astype(int)})
