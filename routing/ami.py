"""Asterisk Manager Interface: panoramisk's framing behind a wrapper that fixes what it lacks.

panoramisk (1.4) parses AMI well but, on its own: reconnects every 2 s forever, even after
``close()``; takes a failed login as a flag nobody reads; sends pings and never checks the reply;
replays unanswered actions after a reconnect (an Originate could run twice); decodes each TCP chunk
separately (splitting UTF-8 characters); and runs callbacks inside ``data_received``, where one
exception drops the connection. So here: one panoramisk ``Manager`` per connection, with its own
reconnect, ping and replay disabled; our login check, ping watchdog and backoff; a UTF-8
incremental decoder; events handed to a queue and dispatched by an owned task with each handler
guarded; every action value stripped of CR/LF; ``Async: true`` forced on every Originate.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import random
import ssl
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

log = logging.getLogger(__name__)

EventHandler = Callable[[Message], Awaitable[None] | None]


class AmiError(Exception):
    pass


class AmiNotConnected(AmiError):
    pass


class AmiLoginFailed(AmiError):
    pass


def clean_value(value: object) -> str:
    """AMI ends a header at a bare LF: a CR/LF inside a value would inject headers."""
    return str(value).replace("\r", "").replace("\n", "").replace("\x00", "")


def clean_action(action: Mapping[str, object]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in action.items():
        name = clean_value(key).replace(":", "")
        if isinstance(value, (list, tuple)):
            cleaned[name] = [clean_value(item) for item in value]
        else:
            cleaned[name] = clean_value(value)
    if cleaned.get("Action", "").lower() == "originate":
        cleaned["Async"] = "true"  # without it panoramisk drops the connection (#90, #97)
    return cleaned


_BODY_RESPONSES = ("Response: Follows", "Response: Fail")


class AmiMessage(Message):  # type: ignore[misc]
    """panoramisk's ``Message`` with direct lookups: its own go through ``MutableMapping``'s
    generic methods, and the handlers read each event's headers a dozen times."""

    def get(self, key: str, default: Any = None) -> Any:
        found = self._store.get(key.lower())
        return default if found is None else found[1]

    def __getitem__(self, key: str) -> Any:
        return self._store[key.lower()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._store

    @property
    def id(self) -> Any:
        found = self._store.get("commandid") or self._store.get("actionid")
        return None if found is None else found[1]

    @property
    def action_id(self) -> Any:
        found = self._store.get("actionid")
        return None if found is None else found[1]


def parse_message(block: str) -> Message | None:
    """One AMI message (the text between blank lines) as panoramisk's ``Message``, the same as
    ``Message.from_line`` gives (tests/unit/test_ami.py compares them on recorded wire bytes)
    but built in one pass: panoramisk's parse filled its case-insensitive dict key by key
    through ``MutableMapping.update``, 40% of the controller's time in an AMI event storm.
    A repeated header (ChanVariable) becomes a list, as there."""
    if block.startswith(_BODY_RESPONSES):  # a command's output follows the headers: panoramisk's parse
        return Message.from_line(block)
    store: dict[str, tuple[str, Any]] = {}
    for line in block.split("\r\n"):
        key, separator, value = line.partition(": ")
        if not separator:
            continue  # the greeting, or a header with no value
        lower = key.lower()
        if lower == "result":
            value = unquote(value).strip()
        known = store.get(lower)
        if known is None:
            store[lower] = (key, value)
        else:
            store[lower] = (key, [*known[1], value] if isinstance(known[1], list) else [known[1], value])
    if "event" not in store and "response" not in store:
        return None
    store["content"] = ("content", "")  # what Message(headers, content="") holds
    message: AmiMessage = AmiMessage.__new__(AmiMessage)
    message._store = store
    message.manager = None
    return message


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with its own framing: decodes across chunk boundaries (a UTF-8
    character split by TCP is not dropped) and parses with ``parse_message``."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._unparsed = ""

    def data_received(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if not text:
            return
        if self.version is None and text.startswith("Asterisk Call Manager/"):  # type: ignore[has-type]
            self.version = text.partition("\r\n")[0].partition("/")[2].strip()
        blocks = (self._unparsed + text).split("\r\n\r\n")
        self._unparsed = blocks.pop()
        for block in blocks:
            message = parse_message(block.strip())
            if message is not None:
                self.handle_message(message)  # replies to their actions, events to dispatch


class _Manager(Manager):  # type: ignore[misc]
    """A panoramisk Manager for exactly one connection: no reconnect, no ping, no replay."""

    def __init__(self, on_event: Callable[[Message], None], on_lost: Callable[[], None], **config: Any) -> None:
        super().__init__(**config)
        self._on_event = on_event
        self._on_lost = on_lost
        self.callbacks.clear()
        self.patterns.clear()

    def ping(self) -> None:  # our watchdog pings
        return None

    def dispatch(self, event: Message) -> list[str]:
        self._on_event(event)  # never run handlers inside data_received
        return []

    def connection_lost(self, exc: Exception | None) -> None:
        self._connected = False
        pinger = getattr(self, "pinger", None)
        if pinger is not None:
            pinger.cancel()
        self.pinger = None
        # panoramisk parks unanswered actions here to replay them after a reconnect (an
        # Originate could run twice): fail them instead, so their callers learn at once.
        for action in self.awaiting_actions:
            if not action.future.done():
                action.future.set_exception(AmiNotConnected("AMI connection lost"))
        self.awaiting_actions.clear()
        self._on_lost()


class ConnectionState(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    READY = "ready"
    CLOSED = "closed"


@dataclass(frozen=True)
class OriginateResult:
    success: bool
    reason: str
    uniqueid: str


class AmiClient:
    # Dispatched to handlers after every successful login (first connect and each reconnect).
    CONNECTED_EVENT = "HotlineAmiConnected"
    # Dispatched when a logged-in connection is lost (handlers learn their view is going stale).
    LOST_EVENT = "HotlineAmiLost"

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        connect_timeout: float = 5.0,
        action_timeout: float = 10.0,
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        boot_timeout: float = 60.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._tls = tls  # AMI over TLS (manager.conf tlsenable): the secret never crosses the network in clear
        self._boot_timeout = boot_timeout
        self._host, self._port = host, port
        self._username, self._secret = username, secret
        self._connect_timeout = connect_timeout
        self._action_timeout = action_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._backoff_initial, self._backoff_max = backoff_initial, backoff_max
        self._handlers: dict[str, list[EventHandler]] = {}
        self._events: asyncio.Queue[Message] = asyncio.Queue(maxsize=100_000)
        self._originates: dict[str, asyncio.Future[Message]] = {}  # ActionID -> OriginateResponse
        self._manager: _Manager | None = None
        self._lost = asyncio.Event()
        self._ready = asyncio.Event()
        self._booted = asyncio.Event()  # FullyBooted seen on this connection
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self.state = ConnectionState.DISCONNECTED
        self.connections = 0  # how many times we connected: a reconnect shows here
        self.dropped_events = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background (owned tasks); returns at once."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._run(), name="ami-connection"),
            asyncio.create_task(self._dispatch_events(), name="ami-events"),
        ]

    async def wait_ready(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def close(self) -> None:
        self._closed = True
        self.state = ConnectionState.CLOSED
        self._drop_connection()
        stuck = set(self._tasks)
        # A handler's library may swallow one cancellation (the dispatcher then waits for the next
        # event, forever): cancel again until the tasks end, within a bound.
        for _ in range(5):
            if not stuck:
                break
            for task in stuck:
                task.cancel()
            _, stuck = await asyncio.wait(stuck, timeout=1.0)
        if stuck:
            for task in stuck:
                frames = "; ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in task.get_stack())
                log.error("AMI task %s did not stop when cancelled (at %s)", task.get_name(), frames)
        self._tasks = []

    def _drop_connection(self) -> None:
        self._ready.clear()
        manager, self._manager = self._manager, None
        if manager is not None:
            for action in list(getattr(manager.protocol, "responses", {}).values()):
                if not action.future.done():
                    action.future.set_exception(AmiNotConnected("AMI connection lost"))
            manager.close()

    async def _run(self) -> None:
        delay = self._backoff_initial
        while not self._closed:
            self.state = ConnectionState.CONNECTING
            try:
                await self._connect_once()
            except (OSError, TimeoutError, AmiError) as exc:
                log.warning("AMI %s:%d not available (%s); retrying in %.1fs", self._host, self._port, exc, delay)
                self._drop_connection()
                self.state = ConnectionState.DISCONNECTED
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self._backoff_max)
                continue
            delay = self._backoff_initial
            self.state = ConnectionState.READY
            self._ready.set()
            self.inject(self.CONNECTED_EVENT)
            await self._watch()
            self._drop_connection()
            if not self._closed:
                self.state = ConnectionState.DISCONNECTED
                self.inject(self.LOST_EVENT)
                log.warning("AMI connection lost; reconnecting")

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        self._lost.clear()
        self._booted.clear()
        manager = _Manager(
            self._events_put,
            self._lost.set,
            host=self._host,
            port=self._port,
            loop=loop,
            protocol_factory=_Protocol,
            ping_delay=3600,
        )
        async with asyncio.timeout(self._connect_timeout):
            transport, protocol = await loop.create_connection(_Protocol, self._host, self._port, ssl=self._tls)
        connected = loop.create_future()
        connected.set_result((transport, protocol))
        manager.connection_made(connected)
        self._manager = manager
        reply = await self._send(
            {"Action": "Login", "Username": self._username, "Secret": self._secret, "Events": "on"},
            timeout=self._connect_timeout,
        )
        if not reply.success:
            raise AmiLoginFailed(f"AMI login refused: {reply.get('Message', '')}")
        # AMI answers before Asterisk's modules are loaded (QueueAdd would be an unknown command):
        # it sends FullyBooted at login once they are, and we are not ready before that.
        try:
            async with asyncio.timeout(self._boot_timeout):
                await self._booted.wait()
        except TimeoutError:
            raise AmiError("Asterisk did not report FullyBooted after login") from None
        self.connections += 1
        log.info("AMI logged in to %s:%d", self._host, self._port)

    async def _watch(self) -> None:
        """Ping every interval; a missing pong means a dead peer: force a reconnect."""
        while not self._closed:
            lost = asyncio.create_task(self._lost.wait())
            try:
                done, _ = await asyncio.wait({lost}, timeout=self._ping_interval)
            finally:
                lost.cancel()
            if done:
                return
            try:
                await self._send({"Action": "Ping"}, timeout=self._ping_timeout)
            except (TimeoutError, AmiError) as exc:
                log.warning("AMI ping unanswered (%s); reconnecting", exc)
                return

    # -- events -----------------------------------------------------------------------------

    def on(self, event: str, handler: EventHandler) -> None:
        """Register a handler for an event name ('*' for all)."""
        self._handlers.setdefault(event.lower(), []).append(handler)

    def inject(self, name: str) -> None:
        """Queue an event of our own among Asterisk's, for work that must not race their handlers.
        It always gets in: with the queue full, the oldest of Asterisk's events makes room (the
        view is being rebuilt or marked stale anyway)."""
        if self._events.full():
            self._events.get_nowait()
            self.dropped_events += 1
        self._events_put(Message({"Event": name}))

    def _events_put(self, event: Message) -> None:
        if str(event.get("Event", "")) == "FullyBooted":
            self._booted.set()
        waiter = self._originates.get(str(event.get("ActionID", "")))
        if waiter is not None and str(event.get("Event", "")) == "OriginateResponse":
            if not waiter.done():
                waiter.set_result(event)
            return
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped_events += 1

    async def _dispatch_events(self) -> None:
        while True:
            event = await self._events.get()
            name = str(event.get("Event", "")).lower()
            for handler in (*self._handlers.get(name, ()), *self._handlers.get("*", ())):
                try:
                    result = handler(event)
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("AMI handler for %s failed; event dropped for that handler only", name)

    # -- actions ----------------------------------------------------------------------------

    async def _send(self, action: Mapping[str, object], *, timeout: float | None = None, as_list: bool = False) -> Any:
        manager = self._manager
        if manager is None or manager.protocol is None:
            raise AmiNotConnected("AMI is not connected")
        future = manager.send_action(clean_action(action), as_list=as_list)
        async with asyncio.timeout(timeout or self._action_timeout):
            return await future

    async def action(self, action: Mapping[str, object], *, timeout: float | None = None, as_list: bool = False) -> Any:
        """Send an action once (never replayed after a reconnect) and return its reply.

        ``as_list`` is explicit: panoramisk guesses multi-message replies from the message text
        and guesses wrong for QueueAdd ("Added interface to queue"), waiting forever.
        """
        if not self._ready.is_set():
            raise AmiNotConnected("AMI is not ready")
        return await self._send(action, timeout=timeout, as_list=as_list)

    async def originate(
        self,
        channel: str,
        *,
        context: str,
        exten: str,
        priority: int = 1,
        caller_id: str = "",
        variables: Mapping[str, str] | None = None,
        channel_id: str | None = None,
        other_channel_id: str | None = None,
        timeout_ms: int = 30000,
        wait: bool = True,
        action_id: str | None = None,
    ) -> OriginateResult:
        """Originate a call. With ``wait`` (the default) return once the channel came up or failed
        (OriginateResponse); without, once Asterisk accepted the request: for calls that may take
        hours to be answered (a callback waiting in a queue), whose OriginateResponse then goes
        to the event handlers like any other event."""
        channel_id = channel_id or uuid.uuid4().hex
        action_id = action_id or f"originate-{uuid.uuid4().hex}"
        action: dict[str, object] = {
            "Action": "Originate",
            "ActionID": action_id,
            "Channel": channel,
            "Context": context,
            "Exten": exten,
            "Priority": priority,
            "Timeout": timeout_ms,
            "ChannelId": channel_id,
            "Async": "true",
        }
        if other_channel_id:
            action["OtherChannelId"] = other_channel_id
        if caller_id:
            action["CallerID"] = caller_id
        if variables:
            action["Variable"] = [f"{name}={clean_value(value).replace(',', '')}" for name, value in variables.items()]
        # The reply says whether Asterisk queued it; the OriginateResponse event, whether the
        # channel came up. Waiting on the event ourselves lets an Error reply return at once.
        waiter: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        if wait:
            self._originates[action_id] = waiter
        try:
            reply = await self.action(action)
            if not reply.success:
                return OriginateResult(False, str(reply.get("Message", "")), channel_id)
            if not wait:
                return OriginateResult(True, "queued", channel_id)
            async with asyncio.timeout(timeout_ms / 1000 + 10):
                final = await waiter
        finally:
            self._originates.pop(action_id, None)
        return OriginateResult(
            success=str(final.get("Response", "")).lower() == "success",
            reason=str(final.get("Reason", "")),
            uniqueid=channel_id,
        )

    async def queue_add(
        self,
        queue: str,
        interface: str,
        *,
        member_name: str = "",
        penalty: int = 0,
        paused: bool = False,
        state_interface: str = "",
    ) -> None:
        action: dict[str, object] = {
            "Action": "QueueAdd",
            "Queue": queue,
            "Interface": interface,
            "Penalty": penalty,
            "Paused": "true" if paused else "false",
        }
        if member_name:
            action["MemberName"] = member_name
        if state_interface:
            action["StateInterface"] = state_interface
        reply = await self.action(action)
        if not reply.success:
            raise AmiError(f"QueueAdd failed: {reply.get('Message', '')}")

    async def queue_penalty(self, queue: str, interface: str, penalty: int) -> None:
        reply = await self.action({"Action": "QueuePenalty", "Queue": queue, "Interface": interface,
                                   "Penalty": penalty})
        if not reply.success:
            raise AmiError(f"QueuePenalty failed: {reply.get('Message', '')}")

    async def queue_remove(self, queue: str, interface: str) -> None:
        reply = await self.action({"Action": "QueueRemove", "Queue": queue, "Interface": interface})
        if not reply.success:
            raise AmiError(f"QueueRemove failed: {reply.get('Message', '')}")

    async def queue_reload(self) -> None:
        """Re-read queues.conf and queuerules.conf: parameters and rules, never members (so
        waiting callers and logged-in agents stay)."""
        reply = await self.action({"Action": "QueueReload", "Members": "no", "Rules": "yes", "Parameters": "yes"})
        if not reply.success:
            raise AmiError(f"QueueReload failed: {reply.get('Message', '')}")
