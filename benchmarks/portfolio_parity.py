"""Cross-check of the shared-cash portfolio (mode: portfolio) against vectorbt's
``Portfolio.from_orders(..., group_by=True, cash_sharing=True)``.

    python benchmarks/portfolio_parity.py [--json PATH]

The basket: the 20 closes of the bundled ``sp500_20_close`` from 2014-12 on, as daily bars
whose open is the previous close (high and low the larger and smaller of the two; see
rule 2). The strategy: the SMA 10/20 crossover, long only, a death cross closing the
position at the next open, 20 % of the portfolio's equity per position in whole units,
no commission, 100 000 shared cash, no cap on positions: with 20 instruments the cash
binds (some setups cannot buy one unit and are skipped, some are capped by the free cash).

vectorbt replays metaflow-nb's entries and exits as orders (enter to 20 % of the group's
value, exit to 0) and sizes them itself; the check is that the units held of every
instrument at every bar are equal, every closed trade's fill prices are vectorbt's, and
the portfolio's value agrees at every bar (1e-9 relative).

Rules that differ, and how the check sets them equal:

1. *Decisions* (the bars a trade enters and exits) come from metaflow-nb's trades: the
   check covers sizing on the portfolio's value, the shared cash, fill prices and the
   equity, not the signal logic (``benchmarks/parity.py`` checks that, instrument by
   instrument, against backtesting.py).
2. vectorbt turns a target value into units at the *valuation* price (the previous close,
   ``val_price=-inf``), metaflow-nb at the *fill* price (the open). Here the open is the
   previous close, so both are the same number; on bars with gaps the sizes differ.
3. A setup that cannot buy one unit is skipped in metaflow-nb (``INSUFFICIENT_CASH``);
   vectorbt would buy what the cash allows. Skipped setups pass no order to vectorbt.
4. Order of work at one bar: metaflow-nb closes every exit first, then fills entries in
   basket order; passed to vectorbt as its ``call_seq``.
5. No commission: vectorbt charges fees outside a target-percent size, metaflow-nb's
   sizer counts the commission in the cost of a unit.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import metaflow_nb as mf  # noqa: E402
from metaflow_nb.data.basket import basket_files  # noqa: E402

FRACTION = 0.2
CASH = 100_000.0


def write_basket(folder: Path) -> None:
    """The closes as bars whose open is the previous close (rule 2)."""
    for sym, path in basket_files("sp500_20_close").items():
        c = pd.read_csv(path, index_col=0, parse_dates=True)["Close"].loc["2014-12-01":]
        o = c.shift(1).bfill()
        pd.DataFrame({"date": c.index.strftime("%Y-%m-%d"), "open": o, "high": np.maximum(o, c),
                      "low": np.minimum(o, c), "close": c}).to_csv(folder / f"{sym}.csv", index=False)


def strategy() -> dict:
    doc = yaml.safe_load((ROOT / "config/runs/sma_cross.yaml").read_text())
    doc["direction"] = "long_only"
    planning = doc["workforce"]["planning_workers"]
    planning["exit_planning"] = [{"instance_id": "exit_1", "plugin": "reverse_on_opposite",
                                  "params": {"exclusive_orders": False}}]
    planning["size_planning"] = [{"instance_id": "size_1", "plugin": "fixed_fraction_sizer",
                                  "params": {"fraction": FRACTION, "whole_units": True}}]
    return doc


def compare() -> dict:
    import vectorbt as vbt

    with tempfile.TemporaryDirectory() as tmp:
        write_basket(Path(tmp))
        res = mf.backtest(strategy(), {"mode": "portfolio", "universe": {"path": tmp}, "cash": CASH})
    idx, syms = res.index, res.symbols
    n_bars, n_inst = len(idx), len(syms)
    close = pd.DataFrame({s: res.bars[s]["close"].reindex(idx) for s in syms})
    opens = pd.DataFrame({s: res.bars[s]["open"].reindex(idx) for s in syms})
    tr = res.trades
    opened = res.journal[res.journal["event"] == "TRADE_OPENED"]  # with the trades still open at the end
    number = {s: i for i, s in enumerate(syms)}
    entry = idx.get_indexer(opened["time"])
    exit_ = idx.get_indexer(tr["exit_time"])
    size = np.full((n_bars, n_inst), np.nan)
    size[entry, opened["symbol"].map(number).to_numpy()] = FRACTION
    size[exit_, tr["symbol"].map(number).to_numpy()] = 0.0
    call_seq = np.tile(np.arange(n_inst), (n_bars, 1))
    for t in np.unique(np.concatenate([entry, exit_])):
        exits = [c for c in range(n_inst) if size[t, c] == 0.0]
        entries = [c for c in range(n_inst) if size[t, c] == FRACTION]
        call_seq[t] = exits + entries + [c for c in range(n_inst) if c not in exits and c not in entries]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = vbt.Portfolio.from_orders(close, size=pd.DataFrame(size, index=idx, columns=syms),
                                       size_type="targetpercent", price=opens, val_price=-np.inf, cash_sharing=True,
                                       group_by=True, init_cash=CASH, fees=0.0, size_granularity=1.0,
                                       direction="longonly", call_seq=call_seq, freq="1D")
        value = pf.value()
        held = pf.assets().to_numpy()
        trades = pf.trades.records_readable
    ours_held = res.basket.records.position.T
    bars_differing = int((held != ours_held).any(axis=1).sum())
    peer_closed = trades[trades["Status"] == "Closed"].sort_values(["Entry Timestamp", "Column"])
    mine = tr.sort_values(["entry_time", "symbol"])
    prices_differing = -1
    if len(peer_closed) == len(mine):
        prices_differing = int(((np.abs(peer_closed["Avg Entry Price"].to_numpy() / mine["entry_price"].to_numpy() - 1)
                                 > 1e-12) | (np.abs(peer_closed["Avg Exit Price"].to_numpy()
                                                    / mine["exit_price"].to_numpy() - 1) > 1e-12)).sum())
    eq = res.equity["total"]
    rel = float(((value - eq).abs() / eq).max())
    capped = int((res.journal["reason"] == "INSUFFICIENT_CASH").sum())
    ok = bars_differing == 0 and prices_differing == 0 and rel <= 1e-9
    return {"case": f"sma_cross 10/20 long-only, {n_inst} instruments, {FRACTION:.0%} of equity, shared cash",
            "ok": bool(ok), "bars": n_bars, "trades_closed_ours": int(len(tr)),
            "trades_closed_peer": int(len(peer_closed)),
            "bars_with_other_holdings": bars_differing, "trades_with_other_prices": prices_differing,
            "skipped_for_cash": capped,
            "final_equity_ours": float(eq.iloc[-1]), "final_equity_peer": float(value.iloc[-1]),
            "max_equity_rel_diff": rel}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the comparison here")
    args = ap.parse_args(argv)
    import vectorbt as vbt

    r = compare()
    print(f"portfolio parity against vectorbt {vbt.__version__} (from_orders, cash_sharing=True)")
    print(f"  {'OK  ' if r['ok'] else 'FAIL'} {r['case']}: {r['bars']} bars, closed trades "
          f"{r['trades_closed_ours']} vs {r['trades_closed_peer']}, bars with other holdings "
          f"{r['bars_with_other_holdings']}, trades with other prices {r['trades_with_other_prices']}, "
          f"{r['skipped_for_cash']} setups skipped for cash, final equity {r['final_equity_ours']:.6f} vs "
          f"{r['final_equity_peer']:.6f} (max rel diff over all bars {r['max_equity_rel_diff']:.2e})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"peer": f"vectorbt {vbt.__version__}", "cases": [r]}, indent=2))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
