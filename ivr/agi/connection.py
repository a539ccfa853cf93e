"""A FastAGI connection as lines: the bytes side of the wire, under the Channel.

The server's connections are :class:`AgiConnection`, an asyncio Protocol. Replies are short lines
that arrive one per command, so the protocol splits them itself and hands each to the one waiting
reader, with no stream layer in between. Deadlines cost no timer of their own: each connection
keeps one timer, set for the environment's deadline and then moved only when it fires early (most
commands are answered long before their deadline, which then just moves on). The benchmark
(bench/agi_engine.py) measured the stream-based version at about 3x the CPU per call of a bare
Protocol; this is that difference.

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
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
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
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0  # when self._timer fires (its when(), without a method call)
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
        # One timer per connection: the environment's deadline first, then each reply's.
        self._deadline = self._loop.time() + self._header_timeout
        self._timer = self._loop.call_at(self._deadline, self._timer_fired)
        self._timer_when = self._deadline

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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
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

    def _timer_fired(self) -> None:
        self._timer = None
        if self._env is not None:
            self._environment_late()
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._loop.time() >= self._deadline:
            self._waiter = None
            waiter.set_exception(TimeoutError())
        else:  # the deadline moved on since this timer was set: follow it
            self._timer = self._loop.call_at(self._deadline, self._timer_fired)
            self._timer_when = self._deadline

    def readline(self, timeout: float) -> asyncio.Future[bytes]:
        """A future of the next line (no coroutine of its own: this runs for every command).

        The line goes into the future as it arrives: a reader cancelled after that loses it.
        The Channel closes the connection when a command is cancelled, so nothing reads on."""
        if self._waiter is not None and not self._waiter.done():
            raise RuntimeError("one readline at a time")
        waiter: asyncio.Future[bytes] = self._loop.create_future()
        if self._queued() or self._error is not None or self._eof:
            self._answer(waiter)
            return waiter
        self._deadline = self._loop.time() + timeout
        if self._timer is None or self._timer_when > self._deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(self._deadline, self._timer_fired)
            self._timer_when = self._deadline
        self._waiter = waiter
        return waiter

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
