"""FastAGI under protocol faults a real Asterisk cannot be made to produce on demand: a fake
Asterisk peer over TCP per case, against the real server. Each faulty session must end within its
deadline, leave no task or file descriptor behind, never stall the event loop, and a well-behaved
call running at the same time must be served as usual."""

import asyncio
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable

import pytest

from ivr.agi.channel import AgiCommandError, AgiError, AgiTimeout, Channel, ChannelHangup
from ivr.agi.protocol import MAX_ENV_BYTES, AgiProtocolError
from ivr.agi.server import FastAgiServer
from tests.unit.test_agi_channel import answer_sync

ENV = b"agi_network_script: hotline\nagi_uniqueid: %s\nagi_threadid: 1\n\n"
Peer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


ENDINGS: dict[str, str] = {}  # uniqueid -> how the handler's conversation ended


async def handler(channel: Channel) -> None:
    """A short IVR: answer, a prompt the caller may interrupt, a variable."""
    uniqueid = channel.env.uniqueid
    try:
        await channel.answer()
        await channel.stream_file("hotline/welcome", "12")
        await channel.get_variable("HOTLINE_DONE")
        ENDINGS[uniqueid] = "completed"
    except ChannelHangup:
        ENDINGS[uniqueid] = "hangup"
        raise
    except AgiTimeout:
        ENDINGS[uniqueid] = "timeout"
        raise
    except AgiCommandError:
        ENDINGS[uniqueid] = "command_error"
        raise
    except (AgiError, AgiProtocolError):
        ENDINGS[uniqueid] = "protocol_error"
        raise


SERVED: list[str] = []  # good calls whose whole conversation took place


async def well_behaved(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(ENV % b"good.1")
    await answer_sync(reader, writer)
    expected = [b"ANSWER\n", b'STREAM FILE "hotline/welcome" "12"\n', b'GET VARIABLE "HOTLINE_DONE"\n']
    for command, reply in zip(expected, (b"200 result=0\n", b"200 result=0 endpos=800\n",
                                         b"200 result=1 (route)\n"), strict=True):
        assert await reader.readline() == command
        writer.write(reply)
        await writer.drain()
    assert await reader.read() == b""  # the controller closed the session when the handler ended
    SERVED.append("good.1")


async def after_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: bytes,
                       then: str = "close") -> None:
    """Environment, sync, ANSWER ok; the prompt's reply is ``reply``."""
    writer.write(ENV % b"bad.1")
    await answer_sync(reader, writer)
    await reader.readline()
    writer.write(b"200 result=0\n")
    await reader.readline()
    writer.write(reply)
    await writer.drain()
    if then == "stall":
        await reader.read()  # answers nothing more, until the controller gives up and closes
        return
    while await reader.readline():  # answer whatever follows as a dead channel would
        writer.write(b"511 Command Not Permitted on a dead channel or intercept routine\n")
        await writer.drain()


def reply_case(reply: bytes, then: str = "close") -> Peer:
    return lambda r, w: after_answer(r, w, reply, then)


async def closes_before_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"agi_network: yes\nagi_uniq")
    await writer.drain()


async def truncated_headers_then_stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"agi_network: yes\nagi_network_script: hotline\n")
    await writer.drain()
    await reader.read()  # until the header deadline closes it


async def huge_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"agi_network_script: hotline\nagi_uniqueid: 1.2\n" + b"agi_x: " + b"y" * (MAX_ENV_BYTES + 100)
                 + b"\n\n")
    await writer.drain()
    await reader.read()


async def missing_uniqueid(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"agi_network_script: hotline\nagi_threadid: 1\n\n")
    await writer.drain()
    await reader.read()


async def reset_mid_call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(ENV % b"bad.2")
    await answer_sync(reader, writer)
    await reader.readline()
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
    writer.transport.abort()


async def stall_mid_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(ENV % b"bad.3")
    await answer_sync(reader, writer)
    await reader.readline()
    writer.write(b"200 res")  # half a reply, then nothing
    await writer.drain()
    await reader.read()


# How the faulty call's conversation ends (None: it never reaches the handler). "hangup" after
# bytes the channel could read means the call went on to its next command, which the dead peer refused.
EXPECTED = {
    "hangup during a prompt": "hangup", "511 dead channel": "hangup", "multi-line 520": "command_error",
    "510 invalid command": "command_error", "garbage reply": "protocol_error", "non-UTF-8 reply": "hangup",
    "9000-byte line": "hangup", "line over the read limit": "protocol_error", "stall after a reply": "timeout",
    "stall mid-line": "timeout", "connection reset": "hangup", "closes before the headers": None,
    "truncated headers, then a stall": None, "huge headers": None, "missing uniqueid": None,
}
CASES: dict[str, Peer] = {
    "hangup during a prompt": reply_case(b"HANGUP\n200 result=-1 endpos=1200\n"),
    "511 dead channel": reply_case(b"511 Command Not Permitted on a dead channel or intercept routine\n"),
    "multi-line 520": reply_case(b"520-Invalid command syntax.  Proper usage follows:\nUsage: STREAM FILE\n"
                                 b"520 End of proper usage.\n"),
    "510 invalid command": reply_case(b"510 Invalid or unknown command\n"),
    "garbage reply": reply_case(b"\x00\x01garbage{}\n"),
    "non-UTF-8 reply": reply_case(b"200 result=0 (\xff\xfe\xfa) endpos=\xff\n"),
    "9000-byte line": reply_case(b"200 result=0 (" + b"a" * 9000 + b") endpos=1\n"),
    "line over the read limit": reply_case(b"200 result=0 (" + b"a" * 70_000 + b")\n"),
    "stall after a reply": reply_case(b"200 result=0 endpos=1\n", then="stall"),
    "stall mid-line": stall_mid_line,
    "connection reset": reset_mid_call,
    "closes before the headers": closes_before_headers,
    "truncated headers, then a stall": truncated_headers_then_stall,
    "huge headers": huge_headers,
    "missing uniqueid": missing_uniqueid,
}


def unclosed_server_sockets(port: int) -> int:
    """Server-side sockets of the FastAGI port still open on our side: ESTABLISHED, or CLOSE_WAIT
    (the peer closed, we never did). Read from the kernel's table, so other work in the process
    (the end-to-end session's hotline) cannot blur the count."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] in ("01", "08"):
                    count += 1
    return count


def agi_tasks() -> set[asyncio.Task[object]]:
    """Tasks running the FastAGI server's code (the session may run tasks of its own besides)."""
    return {t for t in asyncio.all_tasks()
            if "ivr/agi/" in getattr(getattr(t.get_coro(), "cr_code", None), "co_filename", "")}


async def connect(port: int, peer: Peer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await asyncio.wait_for(peer(reader, writer), 10)
    except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


class LoopWatch:
    """The longest gap between ticks of a 10 ms timer: how long the loop was blocked."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - 0.01)
            last = now

    async def stop(self) -> float:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.worst


@pytest.mark.parametrize("case", list(CASES))
async def test_a_faulty_peer_ends_cleanly_and_others_are_served(case: str) -> None:
    server = FastAgiServer({"hotline": handler}, port=0, header_timeout=0.5, command_timeout=0.5)
    await server.start()
    SERVED.clear()
    ENDINGS.clear()
    watch = LoopWatch()
    started = time.monotonic()
    try:
        await asyncio.gather(connect(server.port, CASES[case]), connect(server.port, well_behaved))
        for _ in range(100):  # the faulty session ends within its deadlines
            if server.active_sessions == 0:
                break
            await asyncio.sleep(0.02)
        assert server.active_sessions == 0, case
        assert time.monotonic() - started < 3.0
        assert SERVED == ["good.1"], "the well-behaved call was not served"
        bad = {k: v for k, v in ENDINGS.items() if k.startswith("bad.")}
        assert list(bad.values()) == ([EXPECTED[case]] if EXPECTED[case] else []), bad
        await asyncio.sleep(0.05)
        assert agi_tasks() == set(), "a task outlived its session"
        assert unclosed_server_sockets(server.port) == 0, "a socket was left open"
    finally:
        stalled = await watch.stop()
        await server.stop(0.5)
    assert stalled < 0.2, f"the event loop stalled {stalled:.3f}s"


async def test_a_flood_of_connections_leaves_nothing_behind_and_a_call_is_served() -> None:
    server = FastAgiServer({"hotline": handler}, port=0, header_timeout=0.5, command_timeout=0.5)
    await server.start()
    SERVED.clear()
    watch = LoopWatch()
    started = time.monotonic()
    try:
        flood = [connect(server.port, CASES[name]) for name in
                 ("closes before the headers", "truncated headers, then a stall", "missing uniqueid") * 80]
        await asyncio.gather(*flood, connect(server.port, well_behaved))
        for _ in range(150):
            if server.active_sessions == 0:
                break
            await asyncio.sleep(0.02)
        assert server.active_sessions == 0
        assert time.monotonic() - started < 5.0
        assert SERVED == ["good.1"]
        await asyncio.sleep(0.05)
        assert agi_tasks() == set()
        assert unclosed_server_sockets(server.port) == 0
    finally:
        stalled = await watch.stop()
        await server.stop(0.5)
    assert stalled < 0.25, f"the event loop stalled {stalled:.3f}s"
