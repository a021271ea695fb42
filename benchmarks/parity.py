"""Peer parity with backtesting.py 0.6.6 on the bundled data.

Runs the same strategies in metaflow-nb and in backtesting.py and compares trade by
trade: entry and exit bars, fill prices, sizes, and the final equity (1e-9 relative).

    python benchmarks/parity.py [--json PATH]

Case 1: SmaCross 10/20, long/short, reversal on the opposite cross (exclusive_orders),
        commission 0.002, cash 10 000, all-in whole units, S&P 500 daily.
Case 2: the same, long-only, with a 3 % stop-loss / 6 % take-profit from the signal
        bar's close; a death cross closes the position.
Both cases also run on the EURUSD 15-minute sample.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import metaflow_nb as mf  # noqa: E402


def _bt_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df.rename(columns=str.capitalize)[["Open", "High", "Low", "Close", "Volume"]].copy()
    # backtesting.py needs volume only for plotting; EURUSD's zero volume is fine
    return out


def run_peer(df: pd.DataFrame, long_only: bool, n1: int = 10, n2: int = 20,
             sl: float = 0.03, tp: float = 0.06, commission: float = 0.002, cash: float = 10_000):
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    def SMA(values, n):
        return pd.Series(values).rolling(n).mean()

    class SmaCross(Strategy):
        def init(self):
            close = self.data.Close
            self.sma1 = self.I(SMA, close, n1)
            self.sma2 = self.I(SMA, close, n2)

        def next(self):
            if crossover(self.sma1, self.sma2):
                self.buy()
            elif crossover(self.sma2, self.sma1):
                self.sell()

    class SmaCrossLongStops(Strategy):
        def init(self):
            close = self.data.Close
            self.sma1 = self.I(SMA, close, n1)
            self.sma2 = self.I(SMA, close, n2)

        def next(self):
            price = self.data.Close[-1]
            if crossover(self.sma1, self.sma2):
                self.buy(sl=price * (1.0 - sl), tp=price * (1.0 + tp))
            elif crossover(self.sma2, self.sma1):
                self.position.close()

    strat = SmaCrossLongStops if long_only else SmaCross
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = Backtest(_bt_frame(df), strat, cash=cash, commission=commission, exclusive_orders=True)
        stats = bt.run()
    trades = stats["_trades"]
    return trades, float(stats["Equity Final [$]"])


def run_ours(df: pd.DataFrame, long_only: bool):
    strategy = ROOT / "config/runs" / ("sma_cross_long_stops.yaml" if long_only else "sma_cross.yaml")
    op = {"data": {"source": "sp500_daily"}, "cash": 10_000, "commission": 0.002}
    res = mf.backtest(str(strategy), op, data=df)
    return res.trades, float(res.metrics["final_equity"])


def compare(name: str, df: pd.DataFrame, long_only: bool) -> dict:
    peer, peer_final = run_peer(df, long_only)
    ours, our_final = run_ours(df, long_only)
    n = min(len(peer), len(ours))
    cols = {
        "entry_bar": (peer["EntryBar"].to_numpy()[:n], ours["entry_bar"].to_numpy()[:n]),
        "exit_bar": (peer["ExitBar"].to_numpy()[:n], ours["exit_bar"].to_numpy()[:n]),
        "entry_price": (peer["EntryPrice"].to_numpy()[:n], ours["entry_price"].to_numpy()[:n]),
        "exit_price": (peer["ExitPrice"].to_numpy()[:n], ours["exit_price"].to_numpy()[:n]),
        "size": (np.abs(peer["Size"].to_numpy())[:n], ours["size"].to_numpy()[:n]),
    }
    mismatches = {}
    for key, (a, b) in cols.items():
        bad = np.flatnonzero(~np.isclose(a.astype(float), b.astype(float), rtol=1e-12, atol=0))
        if bad.size:
            i = int(bad[0])
            mismatches[key] = {"first_trade": i, "peer": float(a[i]), "ours": float(b[i]), "count": int(bad.size)}
    rel = abs(our_final - peer_final) / abs(peer_final)
    ok = len(peer) == len(ours) and not mismatches and rel <= 1e-9
    return {"case": name, "ok": bool(ok), "trades_peer": int(len(peer)), "trades_ours": int(len(ours)),
            "final_equity_peer": peer_final, "final_equity_ours": our_final, "final_equity_rel_diff": rel,
            "mismatches": mismatches}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the comparison here")
    args = ap.parse_args(argv)
    import backtesting
    results = []
    for sample in ("sp500_daily", "eurusd_15m"):
        df = mf.load_data(sample)
        results.append(compare(f"{sample}: sma_cross 10/20 long/short reversal", df, long_only=False))
        results.append(compare(f"{sample}: sma_cross 10/20 long-only 3%/6% stops", df, long_only=True))
    print(f"peer parity against backtesting.py {backtesting.__version__}")
    for r in results:
        flag = "OK  " if r["ok"] else "FAIL"
        print(f"  {flag} {r['case']}: trades {r['trades_ours']} vs {r['trades_peer']}, final equity "
              f"{r['final_equity_ours']:.6f} vs {r['final_equity_peer']:.6f} (rel diff {r['final_equity_rel_diff']:.2e})"
              + (f" mismatches: {r['mismatches']}" if r["mismatches"] else ""))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"peer": f"backtesting {backtesting.__version__}", "cases": results},
                                              indent=2))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
