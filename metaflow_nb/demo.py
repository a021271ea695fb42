"""``make demo``: the main job on the bundled data, writing reports/.

Runs the peer-parity SMA crossover on the S&P 500 sample and the ICT strategy on the
EURUSD 15-minute sample (on 15m alone, and with entries only in the direction of the 4h
structure), prints their metrics and writes each run's trades, journal and equity under
``reports/demo/``. When the report pipeline is available it also reports the source
design's optimization and variant configs, the exit-rule comparison
(``config/variants/exit_rules_eurusd.yaml``) and the higher-timeframe comparison
(``config/variants/htf_bias_eurusd.yaml``), and prints the path of an HTML index.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
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
    rc = 0
    for argv in jobs:
        print("$ metaflow-nb " + " ".join(a.replace(str(ROOT) + "/", "") for a in argv), flush=True)
        rc |= cli(argv)
        print(flush=True)
    try:
        from .reporting import showcase
    except ImportError:
        return rc
    return rc | showcase.run(ROOT)


if __name__ == "__main__":
    sys.exit(main())
