"""An asyncio FastAGI server: accepts Asterisk's connections and hands each call to a handler.

It owns every session task: ``stop()`` stops accepting, lets calls drain for a deadline and then
cancels what is left, so no task outlives the server. ``refuse()`` and ``drain()`` let a shutdown
stop one script first (new IVR calls) while another keeps working (hangup handlers). A handler ends normally on
:class:`ChannelHangup`; any other exception is logged and the connection closed, which makes the
dialplan send the caller to its fallback queue.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from ivr.agi.channel import AgiError, Channel, ChannelHangup
from ivr.agi.protocol import MAX_ENV_BYTES, AgiProtocolError, parse_environment

log = logging.getLogger(__name__)

Handler = Callable[[Channel], Awaitable[None]]

# Replies are short lines; a reply longer than this is garbage and is not buffered further.
READ_LIMIT = 64 * 1024


class FastAgiServer:
    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        header_timeout: float = 5.0,
        command_timeout: float = 10.0,
        allowed_peers: Iterable[str] = ("127.0.0.0/8", "::1/128"),
    ) -> None:
        self._handlers = dict(handlers)
        self.host = host
        self.port = port
        self._header_timeout = header_timeout
        self._command_timeout = command_timeout
        self._allowed = [ipaddress.ip_network(p, strict=False) for p in allowed_peers]
        self._server: asyncio.Server | None = None
        self._sessions: dict[asyncio.Task[None], str] = {}  # task -> script ("" before the env)
        self._refused: set[str] = set()
        self.accepting = False

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, self.host, self.port, limit=READ_LIMIT)
        sockets = self._server.sockets or ()
        if sockets and self.port == 0:
            self.port = sockets[0].getsockname()[1]
        self.accepting = True
        self._refused.clear()
        log.info("FastAGI listening on %s:%d", self.host, self.port)

    def refuse(self, *scripts: str) -> None:
        """Refuse new sessions of these scripts (Asterisk's dialplan then takes over)."""
        self._refused.update(scripts)

    def accept(self, *scripts: str) -> None:
        """Take sessions of these scripts again."""
        self._refused.difference_update(scripts)

    async def drain(self, timeout: float, scripts: set[str] | None = None) -> None:
        """Give sessions (of ``scripts``, or all) ``timeout`` seconds to end, then cancel them."""
        tasks = {t for t, s in self._sessions.items() if scripts is None or s in scripts}
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop accepting, give calls in progress ``drain_timeout`` seconds, then cancel them."""
        self.accepting = False
        if self._server is not None:
            self._server.close()
        await self.drain(drain_timeout)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _peer_allowed(self, writer: asyncio.StreamWriter) -> bool:
        peer = writer.get_extra_info("peername")
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer[0])
        except ValueError:
            return False
        return any(address in network for network in self._allowed)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions[task] = ""
        try:
            await self._serve(reader, writer, task)
        except asyncio.CancelledError:
            # Only drain()/stop() cancel sessions, and this is the connection task's outermost
            # frame: end it quietly. (Python 3.11's start_server callback calls task.exception()
            # on a cancelled task and logs the CancelledError as an error.)
            log.info("call session cancelled at shutdown")
        finally:
            self._sessions.pop(task, None)
            if not writer.is_closing():
                writer.close()

    @staticmethod
    async def _rest_of_environment(reader: asyncio.StreamReader, raw: bytes) -> bytes:
        """Asterisk writes caller name and number raw: a blank line inside one ends the block early.

        Its last fixed variable is ``agi_threadid`` (only ``agi_arg_N`` follow). If that is
        missing, what follows straight away is still environment, not a reply: read it too, so
        the first reply we read really answers our first command.
        """
        for _ in range(8):
            if b"\nagi_threadid:" in b"\n" + raw:
                break
            try:
                async with asyncio.timeout(0.05):
                    raw += await reader.readuntil(b"\n\n")
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                break
        return raw

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task[None]
    ) -> None:
        if not self.accepting or not self._peer_allowed(writer):
            log.warning("FastAGI connection refused from %s", writer.get_extra_info("peername"))
            return
        try:
            async with asyncio.timeout(self._header_timeout):
                raw = await reader.readuntil(b"\n\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            log.info("FastAGI peer closed before sending its environment")
            return
        except (asyncio.LimitOverrunError, ValueError):
            log.warning("FastAGI environment over %d bytes; dropped", READ_LIMIT)
            return
        except TimeoutError:
            log.warning("FastAGI environment not received within %.1fs", self._header_timeout)
            return
        raw = await self._rest_of_environment(reader, raw)
        if len(raw) > MAX_ENV_BYTES:
            log.warning("FastAGI environment of %d bytes exceeds %d; dropped", len(raw), MAX_ENV_BYTES)
            return
        env = parse_environment(raw)
        if env.script in self._refused:
            log.info("call %s: %s refused while shutting down", env.uniqueid, env.script)
            return
        self._sessions[task] = env.script
        handler = self._handlers.get(env.script)
        if handler is None or not env.uniqueid:
            log.warning("FastAGI request for unknown script %r or without uniqueid; dropped", env.script)
            return
        channel = Channel(reader, writer, env, command_timeout=self._command_timeout)
        try:
            await channel.synchronize()
            await handler(channel)
        except ChannelHangup:
            pass
        except (AgiError, AgiProtocolError) as exc:
            log.warning("call %s: AGI conversation failed: %s", env.uniqueid, exc)
        except Exception:
            log.exception("call %s: handler failed", env.uniqueid)
        finally:
            channel.close()
