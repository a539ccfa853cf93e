"""Service level per customer class, measured from the outcome records.

Asterisk keeps one service-level counter per queue with one threshold; our targets are per class
(key 90 % in 15 s, public 80 % in 30 s ...). So the controller measures them itself: of the calls
offered to a queue in the window, the share answered within the class's target time. A caller
who hung up within ``short_abandon`` seconds is not counted (they never really waited). A
callback counts once: its customer leg, answered when the customer was dialled, with the wait
from the caller's first queueing; the booking call itself is not counted again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ivr.menu.schema import CustomerClass
from ivr.outcomes import Disposition, OutcomeRecord
from routing.rules import RoutingRules


@dataclass(frozen=True)
class ClassServiceLevel:
    customer_class: str
    target_percent: float
    target_seconds: int
    offered: int
    answered_in_time: int

    @property
    def percent(self) -> float | None:
        return round(100.0 * self.answered_in_time / self.offered, 1) if self.offered else None

    @property
    def met(self) -> bool | None:
        return None if self.percent is None else self.percent >= self.target_percent


def service_levels(records: Iterable[OutcomeRecord], rules: RoutingRules, *, since: float,
                   short_abandon: float = 5.0) -> dict[str, ClassServiceLevel]:
    offered = {c.value: 0 for c in CustomerClass}
    in_time = {c.value: 0 for c in CustomerClass}
    for record in records:
        if (record.ended_at or 0) < since or record.customer_class not in offered:
            continue
        target = rules.class_rule(CustomerClass(record.customer_class)).service_level.seconds
        answered = record.disposition in (Disposition.ANSWERED, Disposition.FALLBACK) and bool(record.agent)
        if record.kind == "callback":
            if (record.callback or {}).get("status") == "retry":
                continue  # only a callback's last attempt says how it was served
            answered = record.disposition is Disposition.ANSWERED
        elif record.disposition is Disposition.ABANDONED_QUEUE:
            if (record.wait_seconds or 0) < short_abandon:
                continue
        elif not answered:
            continue  # self-served, abandoned in the menu, booked a callback (counted on its leg)
        offered[record.customer_class] += 1
        if answered and record.wait_seconds is not None and record.wait_seconds <= target:
            in_time[record.customer_class] += 1
    return {
        c.value: ClassServiceLevel(
            c.value, rules.class_rule(c).service_level.percent, rules.class_rule(c).service_level.seconds,
            offered[c.value], in_time[c.value],
        )
        for c in CustomerClass
    }
