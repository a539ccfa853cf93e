"""Asterisk's side of AMI, for an event storm: queue events at a set rate, each stamped with its
send time the way ``timestampevents = yes`` stamps them.

It answers Login (any secret), Ping, QueueStatus (from its own state, so a resync agrees with
the storm) and any other action with Success. A storm is a stream of call lifecycles over a few
queues: a caller joins (with the channel variables the hotline's dialplan sets); later it
abandons (QueueCallerAbandon, QueueCallerLeave) or is answered (AgentConnect, QueueCallerLeave,
the agent's QueueMemberStatus in call, AgentComplete, QueueMemberStatus free again). Every event
is one the live view applies, so the count sent is the count of changes a wallboard must show.

``python -m bench.fake_ami``: prints ``port N``, then reads ``storm RATE SECONDS`` lines from
stdin and answers each with ``sent COUNT`` once the storm is over.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import sys
import time
from collections.abc import Iterator

QUEUES = ("hotline-general", "hotline-billing", "hotline-fault", "hotline-key")
CLASSES = (("key", 30), ("business", 20), ("public", 10), ("public", 10), ("public", 10))
AGENTS_PER_QUEUE = 25
TICK = 0.005  # events go out in one write every 5 ms


def _event(name: str, fields: dict[str, str], variables: dict[str, str] | None = None) -> str:
    lines = [f"Event: {name}", "Privilege: agent,all"]
    lines += [f"{key}: {value}" for key, value in fields.items()]
    lines += [f"ChanVariable: {key}={value}" for key, value in (variables or {}).items()]
    return "\r\n".join(lines)


class FakeAsteriskAmi:
    def __init__(self, waiting_target: int = 300) -> None:
        self.waiting_target = waiting_target  # callers kept waiting during a storm
        self.waiting: collections.OrderedDict[str, tuple[str, str, int, float]] = collections.OrderedDict()
        self.members = {q: [f"Local/agent{n}@{q}" for n in range(AGENTS_PER_QUEUE)] for q in QUEUES}
        self.completed = dict.fromkeys(QUEUES, 0)
        self.abandoned = dict.fromkeys(QUEUES, 0)
        self._writers: list[asyncio.StreamWriter] = []
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self.sent = 0

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def connected(self) -> int:
        return sum(1 for w in self._writers if not w.is_closing())

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while True:
                block = await reader.readuntil(b"\r\n\r\n")
                fields = dict(line.split(": ", 1) for line in block.decode().strip().split("\r\n") if ": " in line)
                action_id = fields.get("ActionID", "")
                name = fields.get("Action", "").lower()
                if name == "queuestatus":
                    writer.write(self._queue_status(action_id))
                else:
                    reply = f"Response: Success\r\nActionID: {action_id}\r\nMessage: ok\r\n"
                    if name == "ping":
                        reply += "Ping: Pong\r\n"
                    writer.write(reply.encode() + b"\r\n")
                if name == "login":
                    writer.write(b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")
                    self._writers.append(writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
            writer.close()

    def _queue_status(self, action_id: str) -> bytes:
        now = time.time()
        replies = [f"Response: Success\r\nActionID: {action_id}\r\nEventList: start\r\n"
                   "Message: Queue status will follow"]
        for queue in QUEUES:
            waiting = [(u, w) for u, w in self.waiting.items() if w[0] == queue]
            replies.append(_event("QueueParams", {
                "Queue": queue, "Max": "0", "Strategy": "rrmemory", "Calls": str(len(waiting)), "Holdtime": "20",
                "TalkTime": "120", "Completed": str(self.completed[queue]), "Abandoned": str(self.abandoned[queue]),
                "ServiceLevel": "20", "ServicelevelPerf": "80.0", "ActionID": action_id}))
            for n, interface in enumerate(self.members[queue]):
                replies.append(_event("QueueMember", {
                    "Queue": queue, "Name": f"agent {n}", "Location": interface, "StateInterface": interface,
                    "Membership": "dynamic", "Penalty": "0", "CallsTaken": "0", "LastCall": "0", "InCall": "0",
                    "Status": "1", "Paused": "0", "PausedReason": "", "ActionID": action_id}))
            for position, (uniqueid, (_, channel, priority, joined)) in enumerate(waiting, 1):
                replies.append(_event("QueueEntry", {
                    "Queue": queue, "Position": str(position), "Channel": channel, "Uniqueid": uniqueid,
                    "CallerIDNum": "unknown", "Wait": str(int(now - joined)), "Priority": str(priority),
                    "ActionID": action_id}))
        replies.append(f"Event: QueueStatusComplete\r\nActionID: {action_id}\r\nEventList: Complete\r\n"
                       f"ListItems: {len(replies) - 1}")
        return "\r\n\r\n".join(replies).encode() + b"\r\n\r\n"

    def _lifecycles(self) -> Iterator[str]:
        """Queue events forever: joins until ``waiting_target`` wait, then the oldest caller's
        ending (one in five abandons) before each new join."""
        # A caller leaves self.waiting when the event that takes it out of the queue is pulled,
        # so that the state (and QueueStatus) always matches the events sent so far.
        for n in itertools.count():
            if len(self.waiting) >= self.waiting_target:
                uniqueid, (queue, channel, _, joined) = next(iter(self.waiting.items()))
                position = "1"
                if n % 5 == 0:
                    self.abandoned[queue] += 1
                    del self.waiting[uniqueid]
                    yield _event("QueueCallerAbandon", {"Queue": queue, "Channel": channel, "Uniqueid": uniqueid,
                                                        "Position": position, "OriginalPosition": "3",
                                                        "HoldTime": str(int(time.time() - joined))})
                    yield _event("QueueCallerLeave", {"Queue": queue, "Channel": channel, "Uniqueid": uniqueid,
                                                      "Count": "0", "Position": position})
                else:
                    agent = self.members[queue][n % AGENTS_PER_QUEUE]
                    yield _event("AgentConnect", {"Queue": queue, "Channel": channel, "Uniqueid": uniqueid,
                                                  "Interface": agent, "MemberName": agent, "HoldTime": "12",
                                                  "RingTime": "2"})
                    del self.waiting[uniqueid]
                    yield _event("QueueCallerLeave", {"Queue": queue, "Channel": channel, "Uniqueid": uniqueid,
                                                      "Count": "0", "Position": position})
                    yield self._member_status(queue, agent, in_call=True)
                    self.completed[queue] += 1
                    yield _event("AgentComplete", {"Queue": queue, "Channel": channel, "Uniqueid": uniqueid,
                                                   "Interface": agent, "MemberName": agent, "HoldTime": "12",
                                                   "TalkTime": "95", "Reason": "caller"})
                    yield self._member_status(queue, agent, in_call=False)
            call = next(self._ids)
            queue = QUEUES[call % len(QUEUES)]
            customer_class, priority = CLASSES[call % len(CLASSES)]
            uniqueid, channel = f"storm-{call}.1", f"Local/s@hotline-storm-{call:08x};1"
            joined = time.time()
            self.waiting[uniqueid] = (queue, channel, priority, joined)
            yield _event("QueueCallerJoin", {"Queue": queue, "Channel": channel, "Uniqueid": uniqueid,
                                             "CallerIDNum": "unknown", "Position": str(len(self.waiting)),
                                             "Count": str(len(self.waiting))},
                         {"HOTLINE_CLASS": customer_class, "HOTLINE_PRIORITY": str(priority),
                          "HOTLINE_QUEUED_AT": f"{joined:.3f}"})

    def emit(self, name: str, fields: dict[str, str], variables: dict[str, str] | None = None) -> None:
        """One event of a test's own, stamped like the storm's."""
        event = _event(name, fields, variables).replace(
            "Privilege: agent,all\r\n", f"Privilege: agent,all\r\nTimestamp: {time.time():.6f}\r\n", 1)
        for writer in self._writers:
            writer.write(event.encode() + b"\r\n\r\n")

    def _member_status(self, queue: str, agent: str, *, in_call: bool) -> str:
        return _event("QueueMemberStatus", {
            "Queue": queue, "MemberName": agent, "Interface": agent, "StateInterface": agent,
            "Membership": "dynamic", "Penalty": "0", "CallsTaken": "0", "LastCall": "0",
            "InCall": "1" if in_call else "0", "Status": "2" if in_call else "1", "Paused": "0", "PausedReason": ""})

    async def storm(self, rate: float, seconds: float) -> int:
        """Sends ``rate`` events a second for ``seconds`` to every logged-in client; returns how many."""
        events = self._lifecycles()
        started = time.time()
        sent = 0
        while (elapsed := time.time() - started) < seconds:
            due = int(rate * elapsed) - sent
            if due > 0:
                stamp = f"Timestamp: {time.time():.6f}\r\n"
                # Asterisk puts Timestamp right after Event and Privilege.
                chunk = "".join(event.replace("Privilege: agent,all\r\n", "Privilege: agent,all\r\n" + stamp, 1)
                                + "\r\n\r\n" for event in itertools.islice(events, due)).encode()
                for writer in self._writers:
                    writer.write(chunk)
                sent += due
            await asyncio.sleep(TICK)
        for writer in self._writers:
            await writer.drain()
        self.sent += sent
        return sent


async def _main() -> None:
    fake = FakeAsteriskAmi()
    print(f"port {await fake.start()}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "storm":
            sent = await fake.storm(float(line[1]), float(line[2]))
            print(f"sent {sent}", flush=True)
    await fake.stop()


if __name__ == "__main__":
    import uvloop

    uvloop.run(_main())
