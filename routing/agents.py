"""Agents and their skills, applied to Asterisk's queues over AMI.

Agents are data (the routing rules), not Asterisk files: each agent joins the queue of every
skill it has, with penalty = level - 1 (level 1 answers first). It is applied whenever AMI
(re)connects, because queues.conf has persistentmembers=no and an Asterisk restart forgets them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from panoramisk.message import Message

from routing.ami import AmiClient, AmiError
from routing.rules import RoutingRules

log = logging.getLogger(__name__)


class AgentSync:
    def __init__(self, ami: AmiClient, rules: Callable[[], RoutingRules]) -> None:
        self._ami = ami
        self._rules = rules
        self._applied: set[tuple[str, str]] = set()  # (queue, interface) this process put there
        ami.on(AmiClient.CONNECTED_EVENT, self._on_connected)

    async def _on_connected(self, _event: Message) -> None:
        await self.apply()

    async def _memberships(self) -> set[tuple[str, str]]:
        replies = await self._ami.action({"Action": "QueueStatus"}, as_list=True)
        return {
            (str(e.get("Queue", "")), str(e.get("Location", "") or e.get("Interface", "")))
            for e in (replies if isinstance(replies, list) else [])
            if e.get("Event") == "QueueMember"
        }

    async def remove_stale(self) -> int:
        """Take out memberships the rules no longer have: those this process applied before, and
        any membership of an agent the rules list in a queue of a skill it lost. Members added by
        hand for an interface the rules do not know are left alone."""
        rules = self._rules()
        wanted = {(rules.queue_of(skill), a.interface) for a in rules.agents for skill in a.skills}
        known = {a.interface for a in rules.agents}
        try:
            present = await self._memberships()
        except (AmiError, TimeoutError) as exc:
            log.error("queue memberships unknown, none removed: %s", exc)
            return 0
        stale = {m for m in present if m not in wanted and (m in self._applied or m[1] in known)}
        removed = 0
        for queue, interface in sorted(stale):
            try:
                await self._ami.queue_remove(queue, interface)
                removed += 1
            except (AmiError, TimeoutError) as exc:
                log.error("could not remove %s from %s: %s", interface, queue, exc)
            self._applied.discard((queue, interface))
        if removed:
            log.info("removed %d membership(s) the routing rules no longer have", removed)
        return removed

    async def apply(self) -> int:
        """Put every agent in its skills' queues at the right penalty; returns memberships applied."""
        rules = self._rules()
        applied = 0
        for agent in rules.agents:
            for skill, level in agent.skills.items():
                queue = rules.queue_of(skill)
                try:
                    try:
                        await self._ami.queue_add(queue, agent.interface, member_name=agent.name,
                                                  penalty=level - 1, state_interface=agent.interface)
                    except AmiError as exc:
                        if "Already there" not in str(exc):
                            raise
                        await self._ami.queue_penalty(queue, agent.interface, level - 1)
                except (AmiError, TimeoutError) as exc:
                    log.error("agent %s could not join %s: %s", agent.name, queue, exc)
                    continue
                self._applied.add((queue, agent.interface))
                applied += 1
        log.info("applied %d agent membership(s) from the routing rules", applied)
        return applied
