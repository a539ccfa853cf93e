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
        ami.on(AmiClient.CONNECTED_EVENT, self._on_connected)

    async def _on_connected(self, _event: Message) -> None:
        await self.apply()

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
                applied += 1
        log.info("applied %d agent membership(s) from the routing rules", applied)
        return applied
