"""When a budget is reached, decided the same way by a worker and by the supervisor.

Prices are floats, and a sum of them drifts: ten replies at $0.005 add up to
$0.04999..., which a plain `>=` would take for under a $0.05 budget, letting
every agent run one more cycle. Amounts within a billionth of a dollar of the
budget count as reaching it.
"""

from __future__ import annotations

BUDGET_EPSILON_USD = 1e-9


def budget_reached(spent_usd: float, budget_usd: float) -> bool:
    return spent_usd >= budget_usd - BUDGET_EPSILON_USD
