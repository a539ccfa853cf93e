"""Estimated wait for a queued caller, from the live queue state (not Asterisk's hold-time average).

Asterisk's own estimate is an exponential average of past hold times: it knows nothing about
who is ahead right now, how many agents are logged in, or when the busy ones will be free. Ours
plays the queue forward: every agent who can take the call becomes free at some moment (now if
available, after its expected remaining handle time if on a call, after the wrap-up if wrapping
up); each caller ahead takes the earliest free agent and keeps it for one average handle time;
the caller is answered when the next agent frees up after that.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class AgentOutlook:
    state: str  # available, ringing, on_call, wrapup, paused, logged_out
    busy_for: float = 0.0  # seconds into the current call or wrap-up


def free_in(agent: AgentOutlook, handle_seconds: float, wrapup_seconds: float) -> float | None:
    """Seconds until the agent can take a new call; None if it is not taking calls."""
    if agent.state in ("available", "ringing"):
        return 0.0
    if agent.state == "on_call":
        # An agent already past the average is assumed to finish soon, not never.
        return max(handle_seconds - agent.busy_for, handle_seconds * 0.1) + wrapup_seconds
    if agent.state == "wrapup":
        return max(wrapup_seconds - agent.busy_for, 0.0)
    return None


def estimate_wait(
    callers_ahead: int, agents: Iterable[AgentOutlook], handle_seconds: float, wrapup_seconds: float = 0.0
) -> float | None:
    """Seconds until the caller behind ``callers_ahead`` others is answered; None when no agent
    is there to answer (nobody logged in, or all paused)."""
    free = [t for a in agents if (t := free_in(a, handle_seconds, wrapup_seconds)) is not None]
    if not free:
        return None
    heapq.heapify(free)
    for _ in range(max(0, callers_ahead)):
        soonest = heapq.heappop(free)
        heapq.heappush(free, soonest + handle_seconds + wrapup_seconds)
    return free[0]


class HandleTimes:
    """Average handle (talk) time per queue: an exponential moving average of completed calls,
    starting from the rules' assumption until a queue has calls of its own."""

    def __init__(self, default_seconds: float, weight: float = 0.2) -> None:
        self.default_seconds = default_seconds
        self._weight = weight
        self._average: dict[str, float] = {}

    def add(self, queue: str, talk_seconds: float) -> None:
        if talk_seconds <= 0:
            return
        previous = self._average.get(queue)
        self._average[queue] = talk_seconds if previous is None else (
            (1 - self._weight) * previous + self._weight * talk_seconds
        )

    def of(self, queue: str) -> float:
        return self._average.get(queue, self.default_seconds)
