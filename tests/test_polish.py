"""Polish of #20: the journal's trade_id is empty (not -1) on events of no trade, zone
columns of a strategy without zones are left out of tables, rejection shares have two
decimals."""
from __future__ import annotations

import metaflow_nb as mf


def test_journal_trade_id_is_null_where_no_trade_and_links_the_trades():
    res = mf.backtest("config/runs/sma_cross.yaml", data=mf.load_data("sp500_daily")[-300:])
    j = res.journal
    assert str(j["trade_id"].dtype) == "Int64"
    traded = j["event"].isin(["TRADE_OPENED", "TRADE_CLOSED"])
    assert j.loc[~traded, "trade_id"].isna().all() and j.loc[traded, "trade_id"].notna().all()
    assert not (j["trade_id"] == -1).any()
    closed = j[j["event"] == "TRADE_CLOSED"].set_index("trade_id")
    opened = j[j["event"] == "TRADE_OPENED"].set_index("trade_id")
    # every closed trade's events name it, on its entry and exit bars
    t = res.trades.set_index("trade_id")
    assert list(closed.index) == list(t.index) and len(t) > 5
    assert list(opened.loc[t.index, "bar"]) == list(t["entry_bar"]) and list(closed["bar"]) == list(t["exit_bar"])
    assert j.to_csv(index=False).splitlines()[1].split(",")[5] == ""   # written empty, not -1


def test_zone_columns_only_where_a_strategy_has_zones():
    from metaflow_nb.services.formatting import without_empty_zones
    sma = mf.backtest("config/runs/sma_cross.yaml", data=mf.load_data("sp500_daily")[-300:]).journal
    assert "zone_top" not in without_empty_zones(sma).columns
    fvg = mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml",
                      end="2022-11-01").journal
    assert {"zone_top", "zone_bottom"} <= set(without_empty_zones(fvg).columns)
