"""Template filters that print a statistic with its interval and n."""

from __future__ import annotations

from django import template

from ..stats.agreement import Estimate
from ..views.agreement_charts import fmt, fmt_ci

register = template.Library()


@register.filter
def ci(est: Estimate | None, digits: int = 2) -> str:
    """``0.62 [0.41, 0.80]``; ``undefined`` when there is no value."""
    return "–" if est is None else fmt_ci(est, digits)


@register.filter
def num(value: float | None, digits: int = 2) -> str:
    return fmt(value, digits)


@register.filter
def pct_ci(est: Estimate | None) -> str:
    """``71% [52%, 85%]`` for a proportion."""
    if est is None or est.value is None:
        return "–"
    if est.ci_low is None or est.ci_high is None:
        return f"{est.value:.0%}"
    return f"{est.value:.0%} [{est.ci_low:.0%}, {est.ci_high:.0%}]"


@register.filter
def per_hundred(est: Estimate | None) -> str:
    """A slope per item shown per 100 items, with its interval."""
    if est is None or est.value is None:
        return "–"
    value = est.value * 100
    if est.ci_low is None or est.ci_high is None:
        return f"{value:+.2f}"
    return f"{value:+.2f} [{est.ci_low * 100:+.2f}, {est.ci_high * 100:+.2f}]"
