"""What intrabar resolution changed: one run decided by the pessimistic rule against the
same run with finer bars (``data.intrabar``), trade by trade."""
from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["fill_changes"]


def fill_changes(pessimistic: Any, finer: Any) -> dict[str, int]:
    """Count what the finer bars changed between two backtest results of the same
    strategy and bars: ``ambiguous`` (bars the first left to the pessimistic rule),
    ``decided_by_finer_bars`` (bars the second decided on finer bars; both count bars, not
    the journal's fill events: a trade opened and stopped on one bar is two), ``same``
    (trades with the same entry and exit), ``changed`` (same entry, another exit time,
    price or reason), ``only_pessimistic`` / ``only_finer`` (trades only one run has:
    the paths part after a changed trade).

    >>> import metaflow_nb as mf
    >>> a = mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_1h.yaml")
    >>> b = mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_1h_intrabar.yaml")
    >>> c = fill_changes(a, b)
    >>> c["ambiguous"] > 0 and c["same"] + c["changed"] + c["only_pessimistic"] == len(a.trades)
    True
    """
    def decisions(res: Any, rule: str) -> int:
        # bars, not journal events: a trade opened and stopped on one bar is two events there
        j = res.journal
        return int(j.loc[j["fill_rule"] == rule, "bar"].nunique())

    key = ["entry_time", "direction", "entry_price"]
    exit_cols = ["exit_time", "exit_price", "exit_reason"]
    a = pessimistic.trades[key + exit_cols]
    b = finer.trades[key + exit_cols]
    both = a.merge(b, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    matched = both[both["_merge"] == "both"]
    same = pd.Series(True, index=matched.index)
    for c in exit_cols:
        same &= matched[f"{c}_a"] == matched[f"{c}_b"]
    return {
        "ambiguous": decisions(pessimistic, "pessimistic"),
        "decided_by_finer_bars": decisions(finer, "finer_bars"),
        "same": int(same.sum()),
        "changed": int((~same).sum()),
        "only_pessimistic": int((both["_merge"] == "left_only").sum()),
        "only_finer": int((both["_merge"] == "right_only").sum()),
    }
