"""The AGI benchmark's load generator: Asterisk's side of FastAGI for many calls, lean enough not
to be the bottleneck (asyncio Protocols on uvloop, one dictionary lookup per reply). Run as
several processes by bench/agi_engine.py:

    python -m bench.agi_load PORT CALLS CONCURRENCY SCRIPT_JSON [HOLD_AT [RESULT_JSON]]

Closed loop: CONCURRENCY calls are kept in flight until CALLS have been made. Each call sends the
environment, then answers each command line with the reply the script gives it (prompts "play"
in zero time, or BENCH_THINK seconds; keys come back as the prompts' replies). BENCH_RAMP spreads
the first CONCURRENCY calls' arrivals over that many seconds. With HOLD_AT, every call stops answering
after that many commands and the process prints "held" once all are held (the server's memory
per call in flight is measured then), and closes them on stdin's end.

Writes one JSON object (to RESULT_JSON, else stdout): calls, errors, seconds, its own CPU
seconds, and a sample of turn times (the server's turn: from our reply to its next command), in
microseconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

ENV = (
    "agi_network: yes\nagi_network_script: hotline\nagi_request: agi://127.0.0.1/hotline\n"
    "agi_channel: Local/s@load-{n};1\nagi_language: en\nagi_type: Local\nagi_uniqueid: {n}\n"
    "agi_version: 22.10.1\nagi_callerid: 13800000000\nagi_calleridname: Load\nagi_callingpres: 0\n"
    "agi_dnid: unknown\nagi_rdnis: unknown\nagi_context: hotline-inbound\nagi_extension: 10000\n"
    "agi_priority: 4\nagi_enhanced: 0.0\nagi_accountcode: \nagi_threadid: 1\n\n"
)
SAMPLE_EVERY = 7  # turn times kept at full speed: one in seven, enough for p99 without the memory


class Generator:
    def __init__(self, port: int, calls: int, concurrency: int, replies: dict[bytes, bytes], hold_at: int,
                 expected: int) -> None:
        self.port = port
        self.calls = calls
        self.concurrency = concurrency
        self.replies = replies
        self.hold_at = hold_at
        self.expected = expected  # commands in a whole call
        self.think = float(os.environ.get("BENCH_THINK", "0"))  # seconds before each reply
        self.ramp = float(os.environ.get("BENCH_RAMP", "0"))  # seconds over which the first calls arrive
        self.sample_every = 1 if self.think else SAMPLE_EVERY  # paced: few turns, keep them all
        self.cut_short = 0
        self.started = 0
        self.finished = 0
        self.errors = 0
        self.held = 0
        self.commands = 0
        self.turns: list[float] = []
        self.done = asyncio.get_running_loop().create_future()
        self.all_held = asyncio.get_running_loop().create_future()
        self.sessions: list[Session] = []

    def start_one(self) -> None:
        if self.started >= self.calls:
            return
        self.started += 1
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.create_connection(lambda: Session(self, self.started), "127.0.0.1", self.port))
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task) -> None:  # type: ignore[type-arg]
        if task.cancelled() or task.exception() is not None:
            self.errors += 1
            self.session_ended()

    def session_ended(self) -> None:
        self.finished += 1
        if self.finished >= self.calls and not self.done.done():
            self.done.set_result(None)
        else:
            self.start_one()


class Session(asyncio.Protocol):
    def __init__(self, generator: Generator, number: int) -> None:
        self.g = generator
        self.number = number
        self.buffer = b""
        self.commands = 0
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None
        self.holding = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.g.sessions.append(self)
        transport.write(ENV.format(n=f"{self.number}.{random.randrange(10**6)}").encode())
        self.sent = time.perf_counter()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        now = time.perf_counter()
        self.buffer += data
        g = self.g
        while (end := self.buffer.find(b"\n")) >= 0:
            line = self.buffer[:end + 1]
            self.buffer = self.buffer[end + 1:]
            self.commands += 1
            g.commands += 1
            if g.commands % g.sample_every == 0 and self.commands > 1:  # the first turn includes the connect
                g.turns.append(now - self.sent)
            if g.hold_at and self.commands >= g.hold_at:
                if not self.holding:
                    self.holding = True
                    g.held += 1
                    if g.held >= g.calls and not g.all_held.done():
                        g.all_held.set_result(None)
                return
            reply = g.replies.get(line)
            if reply is None:
                if line.startswith(b"GET FULL VARIABLE"):  # a sync nonce: echoed
                    reply = b"200 result=1 (" + line[19:-2] + b")\n"
                else:
                    reply = b"200 result=0\n"
            if g.think:  # the prompt "plays" for a while (0.5-1.5x, so calls do not move in step)
                asyncio.get_running_loop().call_later(g.think * (0.5 + random.random()), self.send, reply)
            else:
                self.send(reply)

    def send(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)
            self.sent = time.perf_counter()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.g.hold_at and self.commands < self.g.expected:
            self.g.cut_short += 1  # the server ended the call before the script's end: not a call made
        self.g.session_ended()


async def run(port: int, calls: int, concurrency: int, replies: dict[bytes, bytes], hold_at: int,
              expected: int) -> dict[str, object]:
    g = Generator(port, calls, concurrency, replies, hold_at, expected)
    started = time.perf_counter()
    first = min(concurrency, calls)
    for n in range(first):
        if g.ramp:  # arrivals spread out, as a hotline's are: not all in the same millisecond
            asyncio.get_running_loop().call_later(n * g.ramp / first, g.start_one)
        else:
            g.start_one()
    if hold_at:
        await g.all_held
        print("held", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for session in g.sessions:
            if session.transport is not None:
                session.transport.close()
    await g.done
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"calls": g.finished, "errors": g.errors + g.cut_short, "commands": g.commands,
            "seconds": time.perf_counter() - started, "cpu": usage.ru_utime + usage.ru_stime, "turns": g.turns}


def main() -> None:
    import uvloop

    port, calls, concurrency = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    script = json.loads(Path(sys.argv[4]).read_text())
    hold_at = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    out = Path(sys.argv[6]) if len(sys.argv) > 6 else None
    replies = {c.encode(): r.encode() for c, r in zip(script["commands"], script["replies"], strict=True)}
    result = uvloop.run(run(port, calls, concurrency, replies, hold_at, len(script["commands"])))
    turns = result["turns"]
    assert isinstance(turns, list)
    if len(turns) > 20_000:  # a uniform sample is enough for p99 and keeps the line short
        turns = random.sample(turns, 20_000)
    result["turns"] = [round(t * 1e6) for t in turns]  # microseconds
    if out is not None:  # a file: a long line through the pipe came out cut at 64 KiB
        out.write_text(json.dumps(result))
    else:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
