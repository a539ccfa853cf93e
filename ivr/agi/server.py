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
from typing import Any

from ivr.agi.channel import AgiError, Channel, ChannelHangup
from ivr.agi.connection import AgiConnection, Deadlines
from ivr.agi.protocol import AgiEnvironment, AgiProtocolError, parse_environment

log = logging.getLogger(__name__)

Handler = Callable[[Channel], Awaitable[None]]


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
        self._verdicts: dict[str, bool] = {}  # peer address -> allowed (Asterisk connects from a few)
        self._server: asyncio.Server | None = None
        # A connection's session task and its script (keyed by the connection: a session finds
        # its entry without asyncio.current_task(), a system call's worth of cost per call).
        self._sessions: dict[AgiConnection, tuple[asyncio.Task[None], str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: Deadlines | None = None  # every connection's, on one timer per tick
        self._connections: set[AgiConnection] = set()  # connected, environment not complete yet
        self._refused: set[str] = set()
        self.accepting = False
        # Bound once, handed to every connection: a bound method made per connection is three
        # objects more per call.
        self._environment_ready = self._on_environment
        self._may_connect = self._peer_allowed
        self._forget = self._connections.discard

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        if self._deadlines is None:
            self._deadlines = Deadlines(loop)
        # A deep backlog: a burst of calls (Asterisk opens one connection per AGI) waits in the kernel.
        self._server = await loop.create_server(self._connection, self.host, self.port, backlog=4096)
        # Any: uvloop's server gives a list where asyncio's gives a tuple (the compiled build checks).
        sockets: Any = getattr(self._server, "sockets", None) or ()
        if sockets and self.port == 0:
            self.port = sockets[0].getsockname()[1]
        self.accepting = True
        self._refused.clear()
        log.info("FastAGI listening on %s:%d", self.host, self.port)

    def _connection(self) -> AgiConnection:
        connection = AgiConnection(self._environment_ready, self._may_connect, self._header_timeout,
                                   on_lost=self._forget, loop=self._loop, deadlines=self._deadlines)
        self._connections.add(connection)
        return connection

    def refuse(self, *scripts: str) -> None:
        """Refuse new sessions of these scripts (Asterisk's dialplan then takes over)."""
        self._refused.update(scripts)

    def accept(self, *scripts: str) -> None:
        """Take sessions of these scripts again."""
        self._refused.difference_update(scripts)

    async def drain(self, timeout: float, scripts: set[str] | None = None) -> None:
        """Give sessions (of ``scripts``, or all) ``timeout`` seconds to end, then cancel them."""
        tasks = {task for task, script in self._sessions.values() if scripts is None or script in scripts}
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
        for connection in list(self._connections):  # still before their environment
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._deadlines is not None:
            self._deadlines.close()
            self._deadlines = None

    def _peer_allowed(self, peer: object) -> bool:
        if not self.accepting or not isinstance(peer, tuple) or not peer or not isinstance(peer[0], str):
            return False
        verdict = self._verdicts.get(peer[0])
        if verdict is None:
            try:
                address = ipaddress.ip_address(peer[0])
            except ValueError:
                return False
            verdict = any(address in network for network in self._allowed)
            if len(self._verdicts) >= 1024:  # many peers: a scan; keep the memory bounded
                self._verdicts.clear()
            self._verdicts[peer[0]] = verdict
        return verdict

    def _on_environment(self, connection: AgiConnection, raw: bytes) -> None:
        """A connection's environment is complete: start its session, or turn it away."""
        self._connections.discard(connection)
        if not self.accepting:  # stopping: a session started now would escape the drain
            connection.close()
            return
        env = parse_environment(raw)
        script = env.script
        if script in self._refused:
            log.info("call %s: %s refused while shutting down", env.uniqueid, script)
            connection.close()
            return
        handler = self._handlers.get(script)
        if handler is None or not env.uniqueid:
            log.warning("FastAGI request for unknown script %r or without uniqueid; dropped", script)
            connection.close()
            return
        loop = self._loop or asyncio.get_running_loop()
        self._sessions[connection] = (loop.create_task(self._session(connection, env, handler, loop)), script)

    async def _session(self, connection: AgiConnection, env: AgiEnvironment, handler: Handler,
                       loop: asyncio.AbstractEventLoop) -> None:
        """The session task's one coroutine: a call's whole conversation."""
        channel = Channel(connection, env, command_timeout=self._command_timeout, loop=loop)
        try:
            await channel.synchronize()
            await handler(channel)
        except ChannelHangup:
            pass
        except (AgiError, AgiProtocolError) as exc:
            log.warning("call %s: AGI conversation failed: %s", env.uniqueid, exc)
        except asyncio.CancelledError:
            # Only drain()/stop() cancel sessions, and this is the session task's outermost
            # frame: end it quietly.
            log.info("call session cancelled at shutdown")
        except Exception:
            log.exception("call %s: handler failed", env.uniqueid)
        finally:
            channel.close()
            self._sessions.pop(connection, None)
            connection.close()
