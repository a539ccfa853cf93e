"""The FastAGI servers the engine benchmark compares, each run as a process of its own:

    python -m bench.agi_servers NAME PORT SCRIPT_JSON

- ``hotline``: this project's engine: FastAgiServer, Channel and MenuEngine walking
  bench/menus/three-level.yaml, then the route's variables; compiled by mypyc as `make setup`
  builds it (ivr/native.py). ``hotline-interpreted``: the same, run as plain Python.
- ``raw``: the floor. A minimal asyncio Protocol that sends the script's command lines in order
  and waits for each reply line; no parsing, no timeouts, no safety.
- ``raw-coroutine``: the floor of the hotline's design. The same Protocol, but each call is a
  coroutine in a task of its own that writes each line and awaits a future of its reply, as the
  hotline's Channel does over its AgiConnection; nothing is parsed, no deadline is kept.
- ``panoramisk``: panoramisk's fast_agi Application, sending the same lines.
- ``pystrix``: pystrix's threaded FastAGIServer, sending the same lines.
(ding-dong, the Node peer, is bench/node/server.js.)

The peers send exactly the command lines the hotline engine sent (captured by bench/agi_engine.py
into SCRIPT_JSON), so every server has the same conversation with the load generator. Each
prints "ready" once it listens.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

MENU = Path(__file__).resolve().parent / "menus" / "three-level.yaml"


def hotline_handlers(command_timeout: float = 120.0):  # type: ignore[no-untyped-def]
    """The engine under test, wired as `hotline serve` wires it minus Redis (the peers have none)."""
    from ivr import variables as v
    from ivr.agi.channel import Channel
    from ivr.agi.server import FastAgiServer
    from ivr.menu.engine import CallContext, MenuEngine, RouteRequest
    from ivr.menu.loader import load_menu
    from ivr.prompts import PromptLibrary
    from routing.customers import CustomerClass

    menu = load_menu(MENU, skills={"general"})
    prompts = PromptLibrary("/var/lib/asterisk/sounds/hotline")

    async def hotline(channel: Channel) -> None:
        # The commands ivr/calls.py's handler sends around the menu walk: class, priority and
        # language first; the route's variables after (the decision itself needs Redis: not here).
        call = CallContext(channel.env.uniqueid, channel.env.caller_number, "", CustomerClass.PUBLIC, "en")
        await channel.set_variables({v.PRIORITY: 1, v.CUSTOMER_CLASS: call.customer_class.value,
                                     v.LANGUAGE: call.language})
        await channel.answer()
        ending = await MenuEngine(menu, prompts).run(channel, call)
        if isinstance(ending, RouteRequest):
            await channel.set_variables({
                v.SKILL: ending.skill, v.QUEUE: "hotline-" + ending.skill, v.PRIORITY: 1, v.QUEUE_TIMEOUT: "",
                v.OVERFLOW_QUEUE: "", v.MAX_PENALTY: "", v.SURVEY: "", v.ANNOUNCE: "1", v.ANNOUNCE_EVERY: 60,
                v.STINT: 20, v.RULE: "", v.QUEUE_OPTIONS: "r", v.DONE: v.DONE_ROUTE})

    def make(port: int) -> FastAgiServer:
        return FastAgiServer({"hotline": hotline}, port=port, command_timeout=command_timeout)

    return make


async def serve_hotline(port: int) -> None:
    import gc

    from ivr.collector import ClockedCollector

    server = hotline_handlers()(port)
    await server.start()
    # As ivr/app.py does once started: what is loaded out of the collector's sight, and the
    # collector on a clock from then on.
    gc.collect()
    gc.freeze()
    collector = ClockedCollector()
    clock = asyncio.create_task(collector.run())
    if report := os.environ.get("BENCH_GC_REPORT"):
        # The benchmark's rounds are shorter than the collector's minute: it asks for the full
        # collection (with calls held in flight) and reads how long it stopped the loop.
        def full_collection() -> None:
            started = time.perf_counter()
            collector.collect()
            Path(report).write_text(f"{1000 * (time.perf_counter() - started):.1f}")

        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, full_collection)
    from ivr import native

    print("ready", native.status(), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        clock.cancel()


class RawSession(asyncio.Protocol):
    """The floor: after the environment, each reply line releases the next command line."""

    def __init__(self, lines: list[bytes]) -> None:
        self._lines = lines
        self._next = 0
        self._buffer = b""
        self._in_env = True
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        if self._in_env:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                return
            self._buffer = self._buffer[end + 2:]
            self._in_env = False
            self._send()
        while (end := self._buffer.find(b"\n")) >= 0:
            self._buffer = self._buffer[end + 1:]
            self._send()

    def _send(self) -> None:
        assert self._transport is not None
        if self._next == len(self._lines):
            self._transport.close()
            return
        self._transport.write(self._lines[self._next])
        self._next += 1


async def serve_raw(port: int, lines: list[bytes],
                    session: Callable[[list[bytes]], asyncio.Protocol] = RawSession) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: session(lines), "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    await asyncio.Event().wait()


class CoroutineSession(asyncio.Protocol):
    """The floor of a coroutine per call: a task walks the script, awaiting a future per reply."""

    def __init__(self, lines: list[bytes]) -> None:
        self._lines = lines
        self._loop = asyncio.get_running_loop()
        self._buffer = b""
        self._in_env = True
        self._reply: asyncio.Future[bytes] | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._in_env:
            self._buffer += data
            if self._buffer.find(b"\n\n") < 0:
                return
            self._in_env = False
            self._buffer = b""
            self._loop.create_task(self._walk())
            return
        self._buffer += data
        if self._buffer.endswith(b"\n") and self._reply is not None:
            reply, self._reply = self._reply, None
            reply.set_result(self._buffer)
            self._buffer = b""

    def connection_lost(self, exc: Exception | None) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.cancel()  # the peer left mid-script: the call's task ends with it

    async def _walk(self) -> None:
        assert self._transport is not None
        for line in self._lines:
            self._reply = self._loop.create_future()
            self._transport.write(line)
            await self._reply
        self._transport.close()


async def serve_panoramisk(port: int, lines: list[bytes]) -> None:
    from panoramisk.fast_agi import Application

    commands = [line.decode().rstrip("\n") for line in lines]
    app = Application()

    async def hotline(request) -> None:  # type: ignore[no-untyped-def]
        for command in commands:
            await request.send_command(command)

    app.add_route("hotline", hotline)
    await asyncio.start_server(app.handler, "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    await asyncio.Event().wait()


def serve_pystrix(port: int, lines: list[bytes]) -> None:
    import pystrix.agi
    from pystrix.agi.agi_core import _Action

    actions = [_Action(line.decode().rstrip("\n")) for line in lines]

    def hotline(agi, args, kwargs, match, path) -> None:  # type: ignore[no-untyped-def]
        for action in actions:
            agi.execute(action)

    server = pystrix.agi.FastAGIServer(interface="127.0.0.1", port=port)
    server.register_script_handler(None, hotline)
    print("ready", flush=True)
    server.serve_forever()


def main() -> None:
    name, port, script = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    lines = [line.encode() for line in json.loads(Path(script).read_text())["commands"]]
    if name == "pystrix":
        serve_pystrix(port, lines)
        return
    if len(sys.argv) > 4 and sys.argv[4] == "uvloop":
        import uvloop

        uvloop.install()
    if name in ("hotline", "hotline-interpreted"):  # bench/agi_engine.py sets HOTLINE_INTERPRETED for the latter
        asyncio.run(serve_hotline(port))
    elif name == "raw":
        asyncio.run(serve_raw(port, lines))
    elif name == "raw-coroutine":
        asyncio.run(serve_raw(port, lines, CoroutineSession))
    elif name == "panoramisk":
        asyncio.run(serve_panoramisk(port, lines))
    else:
        raise SystemExit(f"unknown server {name}")


if __name__ == "__main__":
    main()
