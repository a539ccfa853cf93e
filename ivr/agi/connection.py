"""A FastAGI connection as lines: the bytes side of the wire, under the Channel.

The server's connections are :class:`AgiConnection`, an asyncio Protocol. Replies are short lines
that arrive one per command, so the protocol splits them itself and hands each to the one waiting
reader, with no stream layer in between. Deadlines cost no timer of their own: the server's
connections share :class:`Deadlines`, one loop timer per tick of the clock, and a connection is
moved only when its tick comes before its deadline (most commands are answered long before their
deadline, which then just moves on). The benchmark (bench/agi_engine.py) measured the
stream-based version at about 3x the CPU per call of a bare Protocol; this is that difference.

:class:`StreamLines` gives the same interface over asyncio streams (tests, tools).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from ivr.agi.protocol import MAX_ENV_BYTES, AgiProtocolError

log = logging.getLogger(__name__)

# Replies are short lines; a reply longer than this is garbage and is not buffered further.
READ_LIMIT = 64 * 1024
# The environment ends at a blank line, but a caller name can hold one: after an early end, more
# blocks that arrive within this long (up to MAX_EXTRA_BLOCKS) are still environment.
ENV_GRACE_SECONDS = 0.05
MAX_EXTRA_BLOCKS = 8
# Asterisk sends one reply per command (and at most a HANGUP line besides): more lines waiting
# than this is a peer flooding us, and reading pauses until they are taken.
MAX_QUEUED_LINES = 64
NEWLINE = 10  # b"\n" as a number: "in" on bytes looks for it with memchr, without a method call
# Deadlines are kept to this fraction of a second: a command times out up to this late.
DEADLINE_TICK = 0.1


class Deadlines:
    """The deadlines of many connections on one loop timer per tick, rather than a timer each.

    A timer of its own was six objects per call (about 600 bytes, a libuv heap entry among them)
    made and cancelled for every call; here a connection is an entry in the set of the tick its
    deadline falls in. When a tick ends, each of its connections checks its own deadline:
    passed, it times out; moved on, it joins a later tick. asyncio has no shared deadline of this
    kind, hence this small timing wheel of our own.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float = DEADLINE_TICK) -> None:
        self._loop = loop
        self._tick = tick
        self._due: dict[int, set[AgiConnection]] = {}  # tick number -> connections checked at its end
        self._timers: dict[int, asyncio.TimerHandle] = {}

    def tick_of(self, deadline: float) -> int:
        return int(deadline / self._tick) + 1

    def watch(self, connection: AgiConnection, deadline: float) -> int:
        """Check ``connection`` when the tick holding ``deadline`` ends; returns that tick."""
        tick = self.tick_of(deadline)
        due = self._due.get(tick)
        if due is None:
            due = self._due[tick] = set()
            self._timers[tick] = self._loop.call_at(tick * self._tick, self._expire, tick)
        due.add(connection)
        return tick

    def forget(self, connection: AgiConnection, tick: int) -> None:
        due = self._due.get(tick)
        if due is not None:
            due.discard(connection)  # an emptied tick keeps its timer: it ends as a no-op

    def _expire(self, tick: int) -> None:
        self._timers.pop(tick, None)
        due = self._due.pop(tick, None)
        if due:
            for connection in due:
                try:
                    connection.deadline_check()
                except Exception:  # one connection's failure must not cost the others their deadlines
                    log.exception("FastAGI deadline check failed")

    def close(self) -> None:
        """Cancel the timers (the server stops and closes its connections). A connection still
        open watches again, on new timers, at its next readline."""
        for due in self._due.values():
            for connection in due:
                connection.deadline_dropped()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._due.clear()


class Lines(Protocol):
    """What a Channel needs of its connection."""

    def readline(self, timeout: float) -> Awaitable[bytes]:
        """The next line with its b"\\n"; at the end of the stream what is left (b"" if nothing).
        Raises TimeoutError, ConnectionError, or AgiProtocolError for a line over the limit."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool: ...


class StreamLines:
    """Lines over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def readline(self, timeout: float) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.readline()
        except (asyncio.LimitOverrunError, ValueError) as exc:  # ValueError: a line over the limit
            raise AgiProtocolError(f"unreadable reply: {exc}") from exc

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()

    def is_closing(self) -> bool:
        return self._writer.is_closing()


class AgiConnection(asyncio.Protocol):
    """One connection from Asterisk: first its environment block, then reply lines.

    ``on_environment(connection, raw)`` is called once the environment is complete; ``allowed``
    decides at connect time whether the peer may talk to us at all; ``on_lost`` hears the end.
    """

    def __init__(self, on_environment: Callable[[AgiConnection, bytes], None],
                 allowed: Callable[[object], bool], header_timeout: float,
                 on_lost: Callable[[AgiConnection], None] = lambda _: None,
                 loop: asyncio.AbstractEventLoop | None = None, deadlines: Deadlines | None = None) -> None:
        self._on_environment = on_environment
        self._on_lost = on_lost
        self._allowed = allowed
        self._header_timeout = header_timeout
        self._transport: asyncio.Transport | None = None
        self._loop = loop or asyncio.get_running_loop()
        self._buffer = bytearray()
        # Lines read and not yet taken, from self._head on: a list, which costs nothing until a
        # line waits (a deque allocates a 64-slot block for every connection, and lines seldom wait).
        self._lines: list[bytes] = []
        self._head = 0
        self._env: bytearray | None = bytearray()  # None once the environment is complete
        self._extra_blocks = 0
        self._env_end = -1  # where the last blank line seen in the environment was
        self._grace_timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[bytes] | None = None  # a readline's: gets the next line
        self._deadline = 0.0
        self._deadlines = deadlines or Deadlines(self._loop)
        self._tick = 0  # the tick of self._deadlines this connection waits in (0: none)
        self._eof = False
        self._closing = False  # we closed the transport, or it is lost (no method call to ask)
        self._reading_paused = False
        self._error: BaseException | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if not self._allowed(transport.get_extra_info("peername")):
            log.warning("FastAGI connection refused from %s", transport.get_extra_info("peername"))
            transport.close()
            return
        # The environment's deadline first, then each reply's.
        self._deadline = self._loop.time() + self._header_timeout
        self._tick = self._deadlines.watch(self, self._deadline)

    def data_received(self, data: bytes) -> None:
        if self._env is not None:
            # (find(), not "in": in Python 3.11 bytes-in-bytes first tries the needle as a number,
            # and the TypeError it raises and clears costs more than the search.)
            if not self._env and data.endswith(b"\n\n") and data.find(b"\nagi_threadid:") >= 0:
                # The whole environment in one read with nothing after it, as Asterisk sends it.
                self._environment_done(len(data), data)
                return
            self._environment_data(data)
            return
        waiter = self._waiter
        if (waiter is not None and not self._buffer and not self._queued() and self._error is None
                and data.endswith(b"\n") and NEWLINE not in data[:-1] and len(data) <= READ_LIMIT
                and not waiter.done()):
            # One whole reply line, awaited: the common case, handed over as it is.
            self._waiter = None
            waiter.set_result(data)
            return
        self._buffer += data
        self._split_lines()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._closing = True
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        if self._tick:
            self._deadlines.forget(self, self._tick)
            self._tick = 0
        self._wake()
        self._on_lost(self)

    # -- the environment ------------------------------------------------------------------

    def _environment_data(self, data: bytes) -> None:
        assert self._env is not None
        self._env += data
        if len(self._env) > MAX_ENV_BYTES + READ_LIMIT:
            log.warning("FastAGI environment over %d bytes; dropped", MAX_ENV_BYTES)
            self.close()
            return
        end = self._env.rfind(b"\n\n")
        if end < 0 or end == self._env_end:  # no blank line yet, or no new one (a block goes on)
            return
        self._env_end = end
        complete = b"\n" + bytes(self._env[:end + 2])
        if b"\nagi_threadid:" in complete or self._extra_blocks >= MAX_EXTRA_BLOCKS:
            self._environment_done(end + 2)
            return
        # Ended before its last fixed variable: a blank line inside a caller name. What follows
        # at once is still environment; wait a moment for it.
        self._extra_blocks += 1
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        self._grace_timer = self._loop.call_later(ENV_GRACE_SECONDS, self._environment_grace_over)
        # The grace ends the environment now, whatever is left of the header deadline: move that
        # far enough that it cannot close the connection first (deadline_check follows it).
        self._deadline = max(self._deadline, self._loop.time() + 2 * ENV_GRACE_SECONDS + DEADLINE_TICK)

    def _environment_grace_over(self) -> None:
        if self._env is not None:
            end = self._env.rfind(b"\n\n")
            self._environment_done(end + 2)

    def _environment_late(self) -> None:
        if self._env is not None:
            if self._env:
                log.warning("FastAGI environment not received within %.1fs", self._header_timeout)
            else:
                log.info("FastAGI peer sent nothing within %.1fs", self._header_timeout)
            self.close()

    def _environment_done(self, end: int, whole: bytes | None = None) -> None:
        """The environment ends at ``end`` of what was read (``whole``: it came in one read, all of it)."""
        assert self._env is not None
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        # The timer stays: it was set for the environment's deadline, and a reply's is later.
        if whole is None:
            raw = bytes(self._env[:end])
            self._buffer = self._env[end:]
        else:
            raw = whole
        self._env = None
        if len(raw) > MAX_ENV_BYTES:
            log.warning("FastAGI environment of %d bytes exceeds %d; dropped", len(raw), MAX_ENV_BYTES)
            self.close()
            return
        self._split_lines()
        self._on_environment(self, raw)

    # -- lines ----------------------------------------------------------------------------

    def _split_lines(self) -> None:
        buffer = self._buffer
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            if end - start > READ_LIMIT:
                break
            self._lines.append(bytes(buffer[start:end + 1]))
            start = end + 1
        if start:
            del buffer[:start]
        if len(buffer) > READ_LIMIT and (buffer.find(b"\n") < 0 or buffer.find(b"\n") > READ_LIMIT):
            self._error = AgiProtocolError(f"unreadable reply: a line over {READ_LIMIT} bytes")
            del buffer[:]
            if self._transport is not None:
                self._transport.pause_reading()
        if self._queued() > MAX_QUEUED_LINES and not self._reading_paused and self._transport is not None:
            self._transport.pause_reading()  # a peer sending lines nobody asked for: stop reading
            self._reading_paused = True
        if self._queued() or self._error is not None:
            self._wake()

    def _queued(self) -> int:
        return len(self._lines) - self._head

    def _take_line(self) -> bytes:
        line = self._lines[self._head]
        self._head += 1
        if self._head == len(self._lines):  # all taken: the list starts again
            self._lines.clear()
            self._head = 0
        elif self._head > MAX_QUEUED_LINES:  # a peer that never lets the list run dry: drop what was taken
            del self._lines[:self._head]
            self._head = 0
        return line

    def _wake(self) -> None:
        """Answer the waiting readline, if there is one and something to answer it with."""
        waiter = self._waiter
        if waiter is None:
            return
        if waiter.done():  # its reader was cancelled
            self._waiter = None
            return
        if self._queued() or self._error is not None or self._eof:
            self._waiter = None
            self._answer(waiter)

    def _answer(self, waiter: asyncio.Future[bytes]) -> None:
        """A readline's result, from what has arrived: a line, the error, or the end of the stream."""
        if self._queued():
            if self._reading_paused and self._queued() < MAX_QUEUED_LINES // 2 and self._transport is not None:
                self._reading_paused = False
                self._transport.resume_reading()
            waiter.set_result(self._take_line())
        elif self._error is not None:
            waiter.set_exception(self._error)
        else:
            rest = bytes(self._buffer)
            del self._buffer[:]
            waiter.set_result(rest)

    def deadline_dropped(self) -> None:
        """Its Deadlines closed: this connection waits in no tick."""
        self._tick = 0

    def deadline_check(self) -> None:
        """The tick this connection waited in has ended (called by its Deadlines)."""
        self._tick = 0
        if self._eof:
            return
        waiter = self._waiter
        if self._env is None and (waiter is None or waiter.done()):
            return  # between commands: the next readline watches again
        if self._loop.time() < self._deadline:  # the deadline moved on since this connection joined the tick
            self._tick = self._deadlines.watch(self, self._deadline)
        elif self._env is not None:
            self._environment_late()
        elif waiter is not None:
            self._waiter = None
            waiter.set_exception(TimeoutError())

    def readline(self, timeout: float) -> asyncio.Future[bytes]:
        """A future of the next line (no coroutine of its own: this runs for every command).

        The line goes into the future as it arrives: a reader cancelled after that loses it.
        The Channel closes the connection when a command is cancelled, so nothing reads on."""
        if self._waiter is not None and not self._waiter.done():
            raise RuntimeError("one readline at a time")
        waiter: asyncio.Future[bytes] = self._loop.create_future()
        self._deadline = self._loop.time() + timeout
        if self._queued() or self._error is not None or self._eof:
            self._answer(waiter)
            return waiter
        if not self._tick:
            self._tick = self._deadlines.watch(self, self._deadline)
        elif self._deadlines.tick_of(self._deadline) < self._tick:  # sooner than the tick it waits in
            self._deadlines.forget(self, self._tick)
            self._tick = self._deadlines.watch(self, self._deadline)
        self._waiter = waiter
        return waiter

    @property
    def deadline(self) -> float:
        """The last readline's deadline (loop time)."""
        return self._deadline

    def write(self, data: bytes) -> None:
        if self._closing or self._transport is None:
            raise ConnectionResetError("the FastAGI connection is closed")
        try:
            self._transport.write(data)
        except RuntimeError:  # uvloop's transport, closed by an error before connection_lost
            raise ConnectionResetError("the FastAGI connection is closed") from None

    def close(self) -> None:
        if self._transport is not None and not self._closing:
            self._closing = True
            self._transport.close()

    def is_closing(self) -> bool:
        return self._closing or self._transport is None or self._transport.is_closing()
