"""Text labels for estimates with p-values, as shown in comparison tables."""
from __future__ import annotations

import math
from typing import Mapping, Tuple

from metaflow_nb.errors import ConfigError

__all__ = ["NO_SIGNIFICANT_WINNER", "binomial_upper_tail", "format_p", "significance_label", "winner_label"]

#: What a comparison table says when no variant beats the baseline significantly.
NO_SIGNIFICANT_WINNER = "no significant winner"


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")


def format_p(p: float) -> str:
    """Format a p-value: ``< 0.001``, two significant digits below 0.1, else two decimals.

    Two significant digits below 0.1 keep 0.049 from being printed as a misleading 0.05.

    >>> format_p(0.41), format_p(0.03), format_p(0.049), format_p(0.0004), format_p(1.0)
    ('0.41', '0.03', '0.049', '< 0.001', '1.00')
    """
    if math.isnan(p):
        return "nan"
    if p < 0.001:
        return "< 0.001"
    if p < 0.1:
        return f"{p:.2g}"
    return f"{p:.2f}"


def significance_label(estimate: float, p: float, alpha: float = 0.05, digits: int = 2) -> str:
    """``"2.78 * (p = 0.03)"`` when ``p < alpha``, ``"2.78 (p = 0.41)"`` otherwise.

    >>> significance_label(2.78, 0.03)
    '2.78 * (p = 0.03)'
    >>> significance_label(2.78, 0.41)
    '2.78 (p = 0.41)'
    >>> significance_label(-0.5, 0.0002, digits=3)
    '-0.500 * (p < 0.001)'
    """
    _check_alpha(alpha)
    ps = format_p(p)
    relation = ps if ps.startswith("<") else f"= {ps}"
    star = " *" if (not math.isnan(p) and p < alpha) else ""
    return f"{estimate:.{digits}f}{star} (p {relation})"


def winner_label(
    comparisons: Mapping[str, Tuple[float, float]],
    alpha: float = 0.05,
    higher_is_better: bool = True,
    digits: int = 2,
) -> str:
    """Name the significant winner of a comparison table, or say there is none.

    ``comparisons`` maps a variant name to ``(estimate, p_value)`` of its difference
    against the baseline. The winner is the variant with ``p < alpha`` and the best
    improvement (largest estimate, or smallest if ``higher_is_better`` is False); a
    significantly *worse* variant is never a winner.

    >>> winner_label({"fast=10": (0.31, 0.41), "fast=20": (0.12, 0.77)})
    'no significant winner'
    >>> winner_label({"fast=10": (0.31, 0.02), "fast=20": (0.52, 0.20)})
    'fast=10: 0.31 * (p = 0.02)'
    """
    _check_alpha(alpha)
    sign = 1.0 if higher_is_better else -1.0
    candidates = [
        (sign * est, name, est, p)
        for name, (est, p) in comparisons.items()
        if not math.isnan(p) and p < alpha and sign * est > 0
    ]
    if not candidates:
        return NO_SIGNIFICANT_WINNER
    _, name, est, p = max(candidates, key=lambda c: c[0])
    return f"{name}: {significance_label(est, p, alpha, digits)}"


def binomial_upper_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2): the one-sided p-value of McNemar's exact test
    with ``k`` of ``n`` discordant pairs on one side (1.0 without a discordant pair).

    >>> binomial_upper_tail(3, 3), binomial_upper_tail(0, 5), round(binomial_upper_tail(9, 10), 6)
    (0.125, 1.0, 0.010742)
    """
    if n == 0 or k <= 0:
        return 1.0
    if n <= 2000:   # exact in integers, rounded once
        return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n
    log_half = n * math.log(0.5)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half for i in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))
