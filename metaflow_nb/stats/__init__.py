"""Statistics that say whether a backtest result is real: selection-bias-corrected Sharpe
ratios, the probability of backtest overfitting, bootstrap intervals and walk-forward
efficiency.

Runtime dependencies are numpy, pandas and the standard library only (the normal CDF and
quantile come from :class:`statistics.NormalDist`).

* :func:`sharpe`, :func:`psr`, :func:`psr_from_returns`, :func:`expected_max_sharpe`,
  :func:`deflated_sharpe_ratio`, :func:`deflated_sharpe_ratio_from_stats`
  - Bailey & Lopez de Prado (2012, 2014).
* :func:`pbo_cscv` - Bailey, Borwein, Lopez de Prado & Zhu (2015).
* :func:`bootstrap_metric`, :func:`bootstrap_difference`,
  :func:`stationary_bootstrap_indices` - Politis & Romano (1994).
* :func:`walk_forward_efficiency`, :func:`oos_spread`.
* :func:`significance_label`, :func:`winner_label`, :func:`binomial_upper_tail`
  (McNemar's exact test).

>>> from metaflow_nb.stats import significance_label
>>> significance_label(2.78, 0.03)
'2.78 * (p = 0.03)'
"""
from metaflow_nb.stats.sharpe import (
    EULER_GAMMA,
    DeflatedSharpe,
    deflated_sharpe_ratio,
    deflated_sharpe_ratio_from_stats,
    expected_max_sharpe,
    moments,
    norm_cdf,
    norm_ppf,
    psr,
    psr_from_returns,
    sharpe,
)
from metaflow_nb.stats.significance import (
    NO_SIGNIFICANT_WINNER,
    binomial_upper_tail,
    format_p,
    significance_label,
    winner_label,
)
from metaflow_nb.stats.pbo import PBOResult, distinct_columns, pbo_cscv
from metaflow_nb.stats.bootstrap import (
    BootstrapDifference,
    BootstrapResult,
    bootstrap_difference,
    bootstrap_metric,
    default_block_length,
    stationary_bootstrap_indices,
)
from metaflow_nb.stats.walk_forward import SpreadSummary, oos_spread, walk_forward_efficiency

__all__ = [
    "EULER_GAMMA",
    "DeflatedSharpe",
    "deflated_sharpe_ratio",
    "deflated_sharpe_ratio_from_stats",
    "expected_max_sharpe",
    "moments",
    "norm_cdf",
    "norm_ppf",
    "psr",
    "psr_from_returns",
    "sharpe",
    "NO_SIGNIFICANT_WINNER",
    "binomial_upper_tail",
    "format_p",
    "significance_label",
    "winner_label",
    "PBOResult",
    "pbo_cscv",
    "distinct_columns",
    "BootstrapDifference",
    "BootstrapResult",
    "bootstrap_difference",
    "bootstrap_metric",
    "default_block_length",
    "stationary_bootstrap_indices",
    "SpreadSummary",
    "oos_spread",
    "walk_forward_efficiency",
]
