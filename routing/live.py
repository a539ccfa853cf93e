"""Who is waiting in which queue, right now: built from AMI events, rebuilt on every reconnect.

QueueCallerJoin/Leave/Abandon keep it current; on every AMI login (a reconnect, or Asterisk
restarted) it is rebuilt from QueueStatus, so it never drifts from what Asterisk says.

Each event that changes the view is published as one change on the ``LiveFeed`` (the wallboard's
push), stamped with Asterisk's own event time (manager.conf ``timestampevents``). The view is
mirrored to Redis (``hotline:live:*``) for other processes by one writer task, a pipeline every
0.1 s: an AMI storm of 10,000 events a second cannot wait on a Redis round trip each.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from panoramisk.message import Message
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ivr.menu.schema import CustomerClass
from routing.ami import AmiClient, AmiError
from routing.live_feed import LiveFeed
from routing.waiting import AgentOutlook, HandleTimes

log = logging.getLogger(__name__)

LIVE_WAITING_KEY = "hotline:live:waiting"
LIVE_AGENTS_KEY = "hotline:live:agents"
LIVE_QUEUES_KEY = "hotline:live:queues"

# Asterisk device states (AST_DEVICE_*) as an agent's state.
_DEVICE_STATES = {
    "0": "logged_out",  # unknown
    "1": "available",  # not in use
    "2": "on_call",  # in use
    "3": "on_call",  # busy
    "4": "logged_out",  # invalid
    "5": "logged_out",  # unavailable
    "6": "ringing",
    "7": "ringing",  # ringing while in use
    "8": "on_call",  # on hold
}


@dataclass
class AgentState:
    """One queue membership of an agent, as Asterisk reports it."""

    queue: str
    name: str
    interface: str
    state: str  # available, ringing, on_call, paused, wrapup, logged_out
    paused_reason: str
    penalty: int
    calls_taken: int
    last_call: float

    @property
    def key(self) -> str:
        return f"{self.queue}|{self.interface}"


@dataclass
class QueueCounters:
    queue: str
    waiting: int
    completed: int
    abandoned: int
    hold_time: int  # Asterisk's average, seconds
    talk_time: int
    service_level_seconds: int
    service_level_percent: float  # answered within the threshold / answered (Asterisk's SL)


@dataclass
class WaitingCaller:
    uniqueid: str
    queue: str
    channel: str
    customer_class: CustomerClass
    base_priority: int  # at join: class + escalation
    priority: int  # now (aging raises it)
    joined_at: float

    def wait(self, now: float) -> float:
        return max(0.0, now - self.joined_at)


@dataclass(frozen=True)
class LeftQueue:
    """Where a caller was when it last left a queue (answered, timed out, abandoned, pressed a key)."""

    queue: str
    position: int
    abandoned: bool
    at: float


def _fields(item: AgentState | QueueCounters | WaitingCaller) -> dict[str, object]:
    """A live-view record as plain JSON-ready values. Not ``dataclasses.asdict``: its deep copy
    was a fifth of the controller's time per event in an AMI storm; these records are flat."""
    fields = dict(vars(item))
    if isinstance(item, WaitingCaller):
        fields["customer_class"] = item.customer_class.value
    return fields


def _channel_vars(event: Message) -> dict[str, str]:
    raw = event.get("ChanVariable", [])
    items = raw if isinstance(raw, list) else [raw]
    return dict(item.split("=", 1) for item in items if isinstance(item, str) and "=" in item)


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


class LiveQueues:
    RESYNC_EVENT = "HotlineLiveResync"  # a resync queued among the AMI events, so it never races them

    def __init__(self, ami: AmiClient, redis: Redis, *, clock: Callable[[], float] = time.time,
                 feed: LiveFeed | None = None) -> None:
        self._ami = ami
        self._redis = redis
        self._clock = clock
        self.feed = feed if feed is not None else LiveFeed()
        # (key, field) -> the record whose latest state is written at the next flush (None: delete)
        self._mirror_pending: dict[tuple[str, str], AgentState | QueueCounters | WaitingCaller | None] = {}
        self._mirror_rewrite = True  # the whole view is written next (start, resync, after a failure)
        self.waiting: dict[str, WaitingCaller] = {}
        self.agents: dict[str, AgentState] = {}  # "queue|interface" -> membership
        self.queues: dict[str, QueueCounters] = {}
        self.wrapup_seconds = 0  # the rules' wrap-up time: an agent is in wrap-up that long after a call
        self.resyncs = 0
        self.synced_connection = 0  # the AMI connection the last rebuild was made on
        # uniqueid -> (first queued, last seen), least recently seen first
        self._first_joined: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        self.left: dict[str, LeftQueue] = {}  # uniqueid -> its last leaving (the abandon point, the rejoin place)
        self.handle_times = HandleTimes(180.0)  # average talk time per queue, for wait estimates
        self._busy_since: dict[str, float] = {}  # agent interface -> when its current call or wrap-up began
        self._redis_paused_until = 0.0  # time.monotonic()
        ami.on("QueueCallerJoin", self._on_join)
        ami.on("QueueMemberStatus", self._on_member)
        ami.on("QueueMemberAdded", self._on_member)
        ami.on("QueueMemberPause", self._on_member)
        ami.on("QueueMemberPenalty", self._on_member)
        ami.on("QueueMemberRemoved", self._on_member_removed)
        ami.on("QueueCallerLeave", self._on_leave)
        ami.on("QueueCallerAbandon", self._on_abandon)
        ami.on("AgentConnect", self._on_agent_connect)
        ami.on("AgentComplete", self._on_agent_complete)
        ami.on(AmiClient.CONNECTED_EVENT, self._on_connected)
        ami.on(AmiClient.LOST_EVENT, self._on_lost)
        ami.on(self.RESYNC_EVENT, self._on_connected)

    def _at(self, event: Message) -> float:
        """When Asterisk sent the event (its Timestamp header), or now if it carries none."""
        try:
            return float(str(event.get("Timestamp", "")))
        except ValueError:
            return self._clock()

    def _caller(self, event: Message, wait: float = 0.0, priority: int | None = None) -> WaitingCaller:
        variables = _channel_vars(event)
        try:
            customer_class = CustomerClass(variables.get("HOTLINE_CLASS", "public"))
        except ValueError:
            customer_class = CustomerClass.PUBLIC
        base = _int(variables.get("HOTLINE_PRIORITY", ""), priority if priority is not None else 0)
        # The dialplan's first-queued time (kept across rejoins, overflow and a callback's place).
        try:
            first_queued = float(variables.get("HOTLINE_QUEUED_AT", ""))
        except ValueError:
            first_queued = self._clock() - wait
        return WaitingCaller(
            uniqueid=str(event.get("Uniqueid", "")),
            queue=str(event.get("Queue", "")),
            channel=str(event.get("Channel", "")),
            customer_class=customer_class,
            base_priority=base,
            priority=priority if priority is not None else base,
            joined_at=min(first_queued, self._clock() - wait),
        )

    async def _on_join(self, event: Message) -> None:
        caller = self._caller(event)
        # An overflow is a new join: the caller keeps the time it first queued, so aging goes on.
        first = self._first_joined.get(caller.uniqueid)
        if first is not None:
            caller.joined_at = min(first[0], caller.joined_at)
        self._first_joined[caller.uniqueid] = (caller.joined_at, self._clock())
        self._first_joined.move_to_end(caller.uniqueid)
        self._forget_old_joins()
        self.waiting[caller.uniqueid] = caller
        self._mirror(LIVE_WAITING_KEY, caller.uniqueid, caller)
        self.feed.publish("join", self._at(event), {"caller": self._caller_view(caller)})

    async def _on_leave(self, event: Message, abandoned: bool = False) -> None:
        uniqueid = str(event.get("Uniqueid", ""))
        queue = str(event.get("Queue", ""))
        self.left[uniqueid] = LeftQueue(queue, _int(event.get("Position"), 0), abandoned, self._clock())
        if len(self.left) > 5000:  # a bounded memory of recent leavings
            for old in list(self.left)[:1000]:
                del self.left[old]
        if self.waiting.pop(uniqueid, None) is not None:
            self._mirror(LIVE_WAITING_KEY, uniqueid, None)
        counters = self.queues.get(queue)
        if abandoned and counters is not None:
            # Asterisk's own count goes up at the same moment. An event that arrived while a
            # resync's QueueStatus was on its way is counted twice until the next resync (15 s).
            counters.abandoned += 1
            self._mirror(LIVE_QUEUES_KEY, queue, counters)
        self.feed.publish("leave", self._at(event), {
            "uniqueid": uniqueid, "queue": queue, "abandoned": abandoned,
            "counters": _fields(counters) if abandoned and counters is not None else None})

    async def _on_abandon(self, event: Message) -> None:
        await self._on_leave(event, abandoned=True)

    async def _on_agent_connect(self, event: Message) -> None:
        interface = str(event.get("Interface", ""))
        self._busy_since[interface] = self._clock()
        self.feed.publish("answered", self._at(event), {
            "queue": str(event.get("Queue", "")), "interface": interface, "uniqueid": str(event.get("Uniqueid", "")),
            "hold_time": _int(event.get("HoldTime"), 0)})

    async def _on_agent_complete(self, event: Message) -> None:
        queue, interface = str(event.get("Queue", "")), str(event.get("Interface", ""))
        self.handle_times.add(queue, float(_int(event.get("TalkTime"), 0)))
        self._busy_since[interface] = self._clock()  # wrap-up starts now
        counters = self.queues.get(queue)
        if counters is not None:
            counters.completed += 1
            self._mirror(LIVE_QUEUES_KEY, queue, counters)
        self.feed.publish("completed", self._at(event), {
            "queue": queue, "interface": interface, "talk_time": _int(event.get("TalkTime"), 0),
            "counters": _fields(counters) if counters is not None else None})

    def outlook(self, queue: str) -> list[AgentOutlook]:
        """The agents who can answer ``queue``, with how long each has been busy."""
        now = self._clock()
        return [
            AgentOutlook(a.state, now - self._busy_since.get(a.interface, now))
            for a in self.agents.values()
            if a.queue == queue
        ]

    def ahead_of(self, queue: str, priority: int) -> int:
        """Callers now in ``queue`` that a caller joining at ``priority`` would wait behind."""
        return sum(1 for c in self.waiting.values() if c.queue == queue and c.priority >= priority)

    async def _on_connected(self, _event: Message) -> None:
        await self.resync()

    def priority_raised(self, caller: WaitingCaller, priority: int) -> None:
        """Aging raised a waiting caller's priority in Asterisk (no event says so)."""
        caller.priority = priority
        self._mirror(LIVE_WAITING_KEY, caller.uniqueid, caller)
        self.feed.publish("priority", self._clock(), {"uniqueid": caller.uniqueid, "priority": priority})

    def going_stale(self) -> None:
        """The controller is letting go of AMI (stopping): wallboards must not show this view as live."""
        self.feed.publish("stale", self._clock(), {})

    async def _on_lost(self, event: Message) -> None:
        self.feed.publish("stale", self._at(event), {})

    def _forget_old_joins(self) -> None:
        horizon = self._clock() - 4 * 3600
        while self._first_joined:
            uniqueid, (_, seen) = next(iter(self._first_joined.items()))
            if seen >= horizon:
                break
            del self._first_joined[uniqueid]

    def _agent(self, event: Message) -> AgentState:
        interface = str(event.get("Interface", "") or event.get("Location", ""))
        paused = str(event.get("Paused", "0")) == "1"
        last_call = float(_int(event.get("LastCall"), 0))
        state = _DEVICE_STATES.get(str(event.get("Status", "0")), "logged_out")
        if str(event.get("InCall", "0")) == "1" and state == "available":
            state = "on_call"
        if state == "available" and last_call and self._clock() - last_call < self.wrapup_seconds:
            state = "wrapup"
        if paused and state != "logged_out":
            state = "paused"
        return AgentState(
            queue=str(event.get("Queue", "")),
            name=str(event.get("MemberName", "") or event.get("Name", "") or interface),
            interface=interface,
            state=state,
            paused_reason=str(event.get("PausedReason", "")),
            penalty=_int(event.get("Penalty"), 0),
            calls_taken=_int(event.get("CallsTaken"), 0),
            last_call=last_call,
        )

    async def _on_member(self, event: Message) -> None:
        agent = self._agent(event)
        self.agents[agent.key] = agent
        self._mirror(LIVE_AGENTS_KEY, agent.key, agent)
        self.feed.publish("agent", self._at(event), {"agent": _fields(agent)})

    async def _on_member_removed(self, event: Message) -> None:
        agent = self._agent(event)
        if self.agents.pop(agent.key, None) is not None:
            self._mirror(LIVE_AGENTS_KEY, agent.key, None)
        self.feed.publish("agent_removed", self._at(event), {"queue": agent.queue, "interface": agent.interface})

    @property
    def stale(self) -> bool:
        """True while the view may be out of date: AMI is down, or not yet rebuilt since it came back."""
        return not self._ami.ready or self.synced_connection != self._ami.connections

    def snapshot(self) -> dict[str, object]:
        """The whole live view, e.g. for the dashboard (``stale``: do not trust it right now;
        ``seq``: the last change it includes; ``now``: this clock, for a browser's own)."""
        now = self._clock()
        return {
            "seq": self.feed.seq,
            "now": now,
            "stale": self.stale,
            "queues": {q: _fields(c) for q, c in self.queues.items()},
            "agents": [_fields(a) for a in self.agents.values()],
            "waiting": [self._caller_view(c, now) for c in self.waiting.values()],
        }

    def _caller_view(self, caller: WaitingCaller, now: float | None = None) -> dict[str, object]:
        now = self._clock() if now is None else now
        return {**_fields(caller), "wait": round(caller.wait(now), 1)}

    async def resync(self) -> int:
        """Rebuild from Asterisk's own QueueStatus (after a reconnect or an Asterisk restart)."""
        connection = self._ami.connections  # the connection this rebuild's data comes from
        try:
            replies = await self._ami.action({"Action": "QueueStatus"}, as_list=True)
        except (AmiError, TimeoutError) as exc:
            log.warning("queue status unavailable: %s", exc)
            return 0
        fresh: dict[str, WaitingCaller] = {}
        agents: dict[str, AgentState] = {}
        queues: dict[str, QueueCounters] = {}
        for event in replies if isinstance(replies, list) else []:
            if event.get("Event") == "QueueMember":
                agent = self._agent(event)
                agents[agent.key] = agent
                continue
            if event.get("Event") == "QueueParams":
                name = str(event.get("Queue", ""))
                queues[name] = QueueCounters(
                    queue=name, waiting=_int(event.get("Calls"), 0), completed=_int(event.get("Completed"), 0),
                    abandoned=_int(event.get("Abandoned"), 0), hold_time=_int(event.get("Holdtime"), 0),
                    talk_time=_int(event.get("TalkTime"), 0), service_level_seconds=_int(event.get("ServiceLevel"), 0),
                    service_level_percent=float(str(event.get("ServicelevelPerf", "0") or 0)),
                )
                continue
            if event.get("Event") != "QueueEntry":
                continue
            caller = self._caller(event, wait=_int(event.get("Wait"), 0), priority=_int(event.get("Priority"), 0))
            known = self.waiting.get(caller.uniqueid)
            if known is not None:
                # QueueEntry carries no channel variables: keep what the join told us.
                caller.customer_class = known.customer_class
                caller.base_priority = known.base_priority
                caller.joined_at = known.joined_at
            else:
                # Seen first here (this process started after the join): its priority may already
                # be aged, so age it from now on rather than counting its wait twice.
                caller.base_priority = caller.priority
                caller.joined_at = self._clock()
            fresh[caller.uniqueid] = caller
        self.waiting, self.agents, self.queues = fresh, agents, queues
        self.resyncs += 1
        self.synced_connection = connection
        self._mirror_pending.clear()
        self._mirror_rewrite = True
        # Clients replace their whole view: whatever they had may have drifted.
        self.feed.publish("snapshot", self._clock(), {"snapshot": self.snapshot()})
        log.info("live queue state resynced: %d caller(s) waiting, %d membership(s)", len(fresh), len(agents))
        return len(fresh)

    async def run_refresher(self, interval: float = 15.0) -> None:
        """Background task (owned by the app): refresh counters and correct any drift."""
        while True:
            await asyncio.sleep(interval)
            if self._ami.ready:
                self._ami.inject(self.RESYNC_EVENT)

    def _mirror(self, key: str, field: str, value: AgentState | QueueCounters | WaitingCaller | None) -> None:
        """Queue a field's new value (None: removed) for the Redis writer; the last one wins."""
        if not self._mirror_rewrite:  # a whole rewrite is due anyway
            self._mirror_pending[(key, field)] = value

    async def run_mirror(self, interval: float = 0.1) -> None:
        """Background task (owned by the app): the only writer of the Redis copy, so its writes
        land in order."""
        while True:
            await asyncio.sleep(interval)
            await self.flush_mirror()

    async def flush_mirror(self) -> None:
        if time.monotonic() < self._redis_paused_until:
            return
        rewrite, pending = self._mirror_rewrite, self._mirror_pending
        if not rewrite and not pending:
            return
        self._mirror_rewrite, self._mirror_pending = False, {}
        pipe = self._redis.pipeline(transaction=rewrite)
        if rewrite:
            pipe.delete(LIVE_WAITING_KEY, LIVE_AGENTS_KEY, LIVE_QUEUES_KEY)
            if self.waiting:
                pipe.hset(LIVE_WAITING_KEY, mapping={u: json.dumps(_fields(c)) for u, c in self.waiting.items()})
            if self.agents:
                pipe.hset(LIVE_AGENTS_KEY, mapping={k: json.dumps(_fields(a)) for k, a in self.agents.items()})
            if self.queues:
                pipe.hset(LIVE_QUEUES_KEY, mapping={q: json.dumps(_fields(c)) for q, c in self.queues.items()})
        else:
            for (key, field), value in pending.items():
                if value is None:
                    pipe.hdel(key, field)
                else:
                    pipe.hset(key, field, json.dumps(_fields(value)))
        try:
            async with asyncio.timeout(0.5):
                await pipe.execute()
        except (TimeoutError, RedisError, OSError) as exc:
            # The copy is now unknown: rewrite it whole once Redis is back, and leave Redis alone till then.
            log.warning("live queue state not mirrored to Redis: %s", exc)
            self._mirror_rewrite, self._mirror_pending = True, {}
            self._redis_paused_until = time.monotonic() + 5.0
