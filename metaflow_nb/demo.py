"""``make demo``: the main job on the bundled data, writing reports/.

Runs the peer-parity SMA crossover on the S&P 500 sample and the ICT strategy on the
EURUSD 15-minute sample (on 15m alone, and with entries only in the direction of the 4h
structure) and the SMA crossover over the bundled us_stocks basket (a portfolio), prints their metrics and writes each run's trades, journal and equity under
``reports/demo/``, and the basket's portfolio page. When the report pipeline is available it also reports the source
design's optimization and variant configs, the exit-rule comparison
(``config/variants/exit_rules_eurusd.yaml``) and the higher-timeframe comparison
(``config/variants/htf_bias_eurusd.yaml``), and prints the path of an HTML index.
It also runs the ICT strategy on 1h bars resampled from the 15m sample, with and without
intrabar resolution, and prints what the 15m bars changed, and the sp500_20_close basket in
one shared account with simultaneous setups in symbol order and ranked by score.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    """Run the demo: backtests of the bundled SMA crossover, ICT strategies and stock
    basket and the basket's report page, written into ``reports/demo``, then the intrabar
    and ranking comparisons (and the showcase, when installed). Returns the exit status:
    0 when every step worked."""
    from .cli import main as cli

    out = ROOT / "reports" / "demo"
    jobs = [
        ["backtest", "--strategy", str(ROOT / "config/runs/sma_cross.yaml"),
         "--operation", str(ROOT / "config/operations/sp500_daily.yaml"), "--out", str(out)],
    ]
    for name in ("ict_smc_strategy", "ict_htf_bias_strategy"):
        ict = ROOT / f"config/runs/{name}.yaml"
        if ict.exists():
            jobs.append(["backtest", "--strategy", str(ict),
                         "--operation", str(ROOT / "config/operations/ict_backtest.yaml"), "--out", str(out)])
    # a basket: the SMA crossover over six instruments, one account each (README "Portfolios")
    jobs.append(["backtest", "--strategy", str(ROOT / "config/runs/sma_cross.yaml"),
                 "--operation", str(ROOT / "config/operations/us_stocks_basket.yaml"), "--out", str(out)])
    # and its portfolio page (reports/demo/us_stocks_basket-independent-<run id[:8]>.html, about a second)
    jobs.append(["report", str(ROOT / "config/runs/sma_cross.yaml"),
                 "--operation", str(ROOT / "config/operations/us_stocks_basket.yaml"), "--out", str(out)])
    rc = 0
    for argv in jobs:
        print("$ metaflow-nb " + " ".join(a.replace(str(ROOT) + "/", "") for a in argv), flush=True)
        rc |= cli(argv)
        print(flush=True)
    rc |= intrabar_comparison()
    rc |= rank_comparison()
    try:
        from .reporting import showcase
    except ImportError:
        return rc
    return rc | showcase.run(ROOT)


def intrabar_comparison() -> int:
    """The ICT strategy on 1h bars resampled from the 15m sample, ambiguous bars decided
    by the pessimistic rule and then by the 15m bars inside them: what changed."""
    from . import api
    from .errors import MetaflowError
    from .services.fills import fill_changes

    ict = ROOT / "config/runs/ict_smc_strategy.yaml"
    try:
        a = api.backtest(ict, ROOT / "config/operations/ict_1h.yaml")
        b = api.backtest(ict, ROOT / "config/operations/ict_1h_intrabar.yaml")
    except MetaflowError as exc:
        print(f"intrabar comparison: {exc}", file=sys.stderr)
        return 2
    c = fill_changes(a, b)
    print("Intrabar resolution: ICT on 1h bars resampled from the 15m sample "
          "(config/operations/ict_1h*.yaml)")
    print(f"  pessimistic rule: {len(a.trades)} trades, return {a.metrics['total_return_pct']:+.2f} %, "
          f"{c['ambiguous']} ambiguous bars left to the pessimistic rule")
    print(f"  with 15m bars:    {len(b.trades)} trades, return {b.metrics['total_return_pct']:+.2f} %, "
          f"{c['decided_by_finer_bars']} bars decided by the finer bars")
    print(f"  trades: {c['same']} unchanged, {c['changed']} with another exit, {c['only_pessimistic']} only "
          f"without and {c['only_finer']} only with the finer bars\n", flush=True)
    return 0


def rank_comparison() -> int:
    """The SMA crossover on the sp500_20_close basket in one shared account (5 positions,
    20 % of equity each), simultaneous setups in symbol order and then ranked by score."""
    import yaml

    from . import api
    from .errors import MetaflowError

    strategy = yaml.safe_load((ROOT / "config/runs/sma_cross.yaml").read_text())
    strategy["workforce"]["planning_workers"]["size_planning"] = [
        {"instance_id": "size_1", "plugin": "fixed_fraction_sizer", "params": {"fraction": 0.2}}]
    try:
        runs = {name: api.backtest(strategy, ROOT / f"config/operations/{name}.yaml")
                for name in ("sp500_20_portfolio", "sp500_20_portfolio_ranked")}
    except MetaflowError as exc:
        print(f"rank comparison: {exc}", file=sys.stderr)
        return 2
    print("Simultaneous setups on a shared account: SMA crossover, sp500_20_close, 5 positions, 20 % each")
    for name, res in runs.items():
        rank = "rank: score " if name.endswith("ranked") else "rank: basket"
        skipped = int((res.journal["reason"] == "MAX_POSITIONS").sum())
        print(f"  {rank} ({name}): {len(res.trades)} trades, return {res.metrics['total_return_pct']:+.2f} %, "
              f"Sharpe {res.metrics['sharpe_ratio']:.2f}, {skipped} setups skipped for MAX_POSITIONS")
    print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
