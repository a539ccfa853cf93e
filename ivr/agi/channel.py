"""A typed, deadline-bound API over one FastAGI connection.

Call-flow code talks to a :class:`Channel`; it never sees a command line. Every way a caller can
be gone (an unsolicited ``HANGUP``, a ``511`` reply, ``result=-1``, the socket closing) raises the
same :class:`ChannelHangup` signal, and the channel remembers it so that later commands that are
only allowed on a live channel fail fast while dead-channel-safe ones (GET/SET VARIABLE) still run.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final

from ivr.agi.connection import AgiConnection, Lines
from ivr.agi.protocol import (
    AgiEnvironment,
    AgiProtocolError,
    LineKind,
    Reply,
    classify_line,
    command_line,
    encode_unique_command,
    exactly_text_or_numbers,
    is_usage_end,
    parse_reply,
    reply_of_line,
)

log = logging.getLogger(__name__)

DTMF_DIGITS = "0123456789*#ABCD"
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# What set_variables hands to MSet in one command: a variable or a function's one-word argument
# (CHANNEL(language)), and values with nothing MSet's argument parsing, which runs twice (on
# commas, then on "="), or a dialplan expression could read differently. Anything else goes by
# SET VARIABLE, which takes any value as it is.
_MSET_PAIR = r"[A-Za-z_][A-Za-z0-9_]*(?:\([A-Za-z0-9_]*\))?=[A-Za-z0-9_.:@/+-]*"
_MSET_PAIRS = re.compile(rf"{_MSET_PAIR}(?:,{_MSET_PAIR})*\Z")  # checked joined: one match, not two per pair


def mset_argument(texts: Mapping[str, str]) -> str | None:
    """MSet's argument setting exactly these variables, or None when a name or value is not plain.

    Neither a name nor a value may hold "," or "=": one comma per pair boundary and the pattern
    over the joined text check that (a value "1,B=2" would otherwise pass as two pairs)."""
    pairs = ",".join([f"{name}={text}" for name, text in texts.items()])
    # MSet reads at most 24 pairs in some Asterisk versions (the rest would become the last value).
    if len(texts) <= 20 and pairs.count(",") == len(texts) - 1 and _MSET_PAIRS.match(pairs):
        return pairs
    return None


# The MSet lines of variable sets seen before (b"": not plain, one SET VARIABLE each): a route's
# variables are the same call after call, and building and checking the line was a seventh of
# the engine's work per call. Keyed by the pairs themselves, order included.
_MSET_LINES: dict[tuple[tuple[str, ...], tuple[str | int, ...]], bytes] = {}
MAX_MSET_LINES = 1024


def _mset_line(values: Mapping[str, str | int]) -> bytes | None:
    """The MSet command setting ``values``, or None when one SET VARIABLE each must do (a name or
    value that is not plain, or a line longer than Asterisk reads)."""
    key = (tuple(values), tuple(values.values()))  # two flat tuples: cheaper to hash and compare than pairs
    cacheable = exactly_text_or_numbers(key[1])
    line = _MSET_LINES.get(key) if cacheable else None
    if line is None:
        pairs = mset_argument({name: value if isinstance(value, str) else str(value)
                               for name, value in zip(key[0], key[1], strict=True)})
        try:
            line = b"" if pairs is None else encode_unique_command("EXEC", "MSet", pairs)
        except ValueError:  # over Asterisk's line: each variable on a line of its own
            line = b""
        if cacheable:
            if len(_MSET_LINES) >= MAX_MSET_LINES:
                _MSET_LINES.clear()
            _MSET_LINES[key] = line
    return line or None


class HangupReason(StrEnum):
    HANGUP_LINE = "hangup_line"
    DEAD_CHANNEL = "dead_channel"
    RESULT_MINUS_ONE = "result_minus_one"
    CONNECTION_CLOSED = "connection_closed"


# Sync nonces: random, drawn from the system 512 at a time (one getrandom system call per call
# was a visible share of a call's cost). None is ever used twice, and one seen in Asterisk's AGI
# debug log tells nothing of the next.
_NONCES: list[bytes] = []
_NONCES_PER_DRAW = 512


def _sync_nonce() -> bytes:
    """A nonce in ASCII letters and digits: a command's argument as it is, without quoting."""
    if not _NONCES:
        drawn = secrets.token_bytes(8 * _NONCES_PER_DRAW)
        _NONCES.extend(b"hotline-sync-" + drawn[i:i + 8].hex().encode() for i in range(0, len(drawn), 8))
    return _NONCES.pop()


CAPTURE_VARIABLE = "HOTLINE_MIXMON"  # the running barge-in capture's MixMonitor id (extensions.conf stops it)


class ChannelHangup(Exception):
    """The caller is gone. A normal end of a call, not an error."""

    def __init__(self, reason: HangupReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class AgiError(Exception):
    """The conversation with Asterisk failed (our bug, or a broken peer)."""


class AgiCommandError(AgiError):
    """Asterisk rejected a command (510 unknown command, 520 usage)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


class AgiCommandFailed(AgiError):
    """A command answered ``result=-1`` although the caller is still there (e.g. a missing file)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


class AgiTimeout(AgiError):
    """Asterisk did not answer a command within its deadline; the connection is dropped."""


class ChannelState(Enum):
    LIVE = "live"
    HUNG_UP = "hung_up"  # the caller left; dead-channel-safe commands still work
    CLOSED = "closed"  # the connection is gone


# Module constants for the per-command path: an enum member lookup costs more than the rest of a check.
_LIVE, _HUNG_UP, _CLOSED = ChannelState.LIVE, ChannelState.HUNG_UP, ChannelState.CLOSED
# Reply codes as plain numbers (ReplyCode's values), compared natively.
_SUCCESS: Final = 200
_INVALID_COMMAND: Final = 510
_DEAD_CHANNEL: Final = 511
_USAGE: Final = 520
# Commands without arguments, built once.
_ANSWER = command_line("ANSWER")
_CHANNEL_STATUS = command_line("CHANNEL STATUS")
_HANGUP = command_line("HANGUP")


@dataclass(frozen=True)
class DigitsResult:
    digits: str
    timed_out: bool


@dataclass(frozen=True)
class TalkResult:
    digit: str | None  # a key that stopped the prompt
    talked_ms: int | None  # the caller spoke this long (then fell silent) while it played


@dataclass(frozen=True)
class RecordResult:
    ended_by: str  # "dtmf", "timeout", "silence" (Asterisk reports it as timeout / randomerror)
    digit: str | None
    end_position: int


def _digit_from_result(reply: Reply) -> str | None:
    code = reply.result_int
    if code is None or code <= 0:
        return None
    return chr(code)


_ESCAPE_DIGITS_SEEN: set[str] = set()  # a menu's escape digits: a few strings, checked on every prompt


def _check_escape_digits(digits: str) -> str:
    if digits not in _ESCAPE_DIGITS_SEEN:
        if any(d not in DTMF_DIGITS for d in digits):
            raise ValueError(f"not DTMF digits: {digits!r}")
        if len(_ESCAPE_DIGITS_SEEN) < 256:
            _ESCAPE_DIGITS_SEEN.add(digits)
    return digits


class Channel:
    """One call's FastAGI conversation."""

    def __init__(self, lines: Lines, environment: AgiEnvironment, *, command_timeout: float = 10.0,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.env = environment
        self._lines = lines
        # The server's connections, called directly by the compiled engine (through the Lines
        # protocol a call is a Python method call, two per command); other Lines through it.
        self._connection = lines if isinstance(lines, AgiConnection) else None
        self._loop = loop or asyncio.get_running_loop()
        self._deadline = 0.0  # of a reply's further lines, or of the sync echo (loop time)
        self._command_timeout = command_timeout
        self._busy = False  # a command is out: the next one waiting for its reply would be a bug
        self.state = _LIVE
        self.hangup_reason: HangupReason | None = None

    # -- plumbing -------------------------------------------------------------------------

    def _mark_hung_up(self, reason: HangupReason) -> ChannelHangup:
        if self.state is _LIVE:
            self.state = _HUNG_UP
            self.hangup_reason = reason
        return ChannelHangup(self.hangup_reason or reason)

    def _mark_closed(self) -> ChannelHangup:
        self.state = _CLOSED
        if self.hangup_reason is None:
            self.hangup_reason = HangupReason.CONNECTION_CLOSED
        return ChannelHangup(HangupReason.CONNECTION_CLOSED)

    async def _read_line(self) -> str:
        """One line before the current command's deadline (TimeoutError after it)."""
        return self._line_of(await self._read_raw_line())

    async def _read_raw_line(self) -> bytes:
        """One line as read (ending in b"\\n", or the end of the stream) before the deadline."""
        try:
            connection = self._connection
            if connection is not None:
                return await connection.readline(self._deadline - self._loop.time())
            return await self._lines.readline(self._deadline - self._loop.time())
        except ConnectionError:
            raise self._mark_closed() from None

    def _line_of(self, raw: bytes) -> str:
        if not raw.endswith(b"\n"):  # the stream ended inside a line, or before one
            raise self._mark_closed()
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    async def _read_reply(self, data_is_rest: bool, first: bytes) -> Reply:
        """The reply to the command just sent, from its first line, already read; the lines after
        it (a HANGUP, a 520 block) before the command's deadline."""
        pending: bytes | None = first
        while True:
            if pending is not None:
                line, pending = self._line_of(pending), None
            else:
                line = await self._read_line()
            if line.startswith("200 "):
                return parse_reply(line, data_is_rest=data_is_rest)
            kind = classify_line(line)
            if kind is LineKind.HANGUP:
                self._mark_hung_up(HangupReason.HANGUP_LINE)
                continue
            if kind is LineKind.USAGE_START:
                lines = [line]
                while not is_usage_end(line):
                    line = await self._read_line()
                    lines.append(line)
                return Reply(_USAGE, "", None, {}, "\n".join(lines))
            return parse_reply(line, data_is_rest=data_is_rest)

    async def _execute(self, line: bytes, *, extra_time: float = 0.0, data_is_rest: bool = False,
                       dead_ok: bool = False, live: bool = False) -> Reply:
        """Send one command line and read its one reply within the command's deadline.

        ``live``: a command whose ``result=-1`` means the caller hung up, or that it failed (see
        _hung_up_or_failed). Callers build the line: command_line() for one that recurs,
        encode_unique_command() for one carrying a caller's data (digits, a variable's value),
        which would seldom recur and is not kept in the cache of command lines."""
        if self.state is not _LIVE:
            if self.state is _CLOSED:
                raise ChannelHangup(self.hangup_reason or HangupReason.CONNECTION_CLOSED)
            if not dead_ok:
                raise ChannelHangup(self.hangup_reason or HangupReason.HANGUP_LINE)
        if self._busy:
            raise RuntimeError("a channel carries one command at a time; the call flow is sequential")
        self._busy = True
        timeout = self._command_timeout + extra_time
        try:
            # No drain: one short command at a time, each awaiting its reply, cannot fill a buffer.
            connection = self._connection
            if connection is not None:
                connection.write(line)
                reading = connection.readline(timeout)
                self._deadline = connection.deadline  # the connection's clock read, not one more
                first = await reading
            else:
                self._deadline = self._loop.time() + timeout
                self._lines.write(line)
                first = await self._lines.readline(timeout)
            if first.startswith(b"200 ") and first.endswith(b"\n"):  # by far the most common reply
                reply = reply_of_line(first, data_is_rest=data_is_rest)
            else:
                reply = await self._read_reply(data_is_rest, first)
        except TimeoutError:
            self.close()
            verb = line.split(b" \"", 1)[0].decode("utf-8", "replace").strip()
            raise AgiTimeout(f"no reply to {verb} within {timeout:.1f}s") from None
        except (ConnectionError, OSError):
            raise self._mark_closed() from None
        except (AgiProtocolError, asyncio.CancelledError):
            # Cancelled while its reply was due: that reply, gone or still to come, would be read
            # as the next command's. The conversation is over (the dialplan takes the call on).
            self.close()
            raise
        finally:
            self._busy = False
        code = reply.code
        if code != _SUCCESS:
            if code == _DEAD_CHANNEL:
                raise self._mark_hung_up(HangupReason.DEAD_CHANNEL)
            if code == _INVALID_COMMAND or code == _USAGE:
                raise AgiCommandError(reply)
            raise AgiProtocolError(f"unexpected reply code: {reply.text!r}")
        if self.state is _HUNG_UP and not dead_ok:
            raise ChannelHangup(self.hangup_reason or HangupReason.HANGUP_LINE)
        if live and reply.result_int == -1:
            await self._hung_up_or_failed(reply)
        return reply

    async def _hung_up_or_failed(self, reply: Reply) -> None:
        """A live command answered ``result=-1``: raise ChannelHangup or AgiCommandFailed.

        Asterisk answers ``result=-1`` both when the caller hangs up and when, say, a sound file
        is missing. With AGISIGHUP=no nothing else tells them apart, so ask: CHANNEL STATUS is
        refused with 511 on a dead channel.
        """
        try:
            status = await self._execute(_CHANNEL_STATUS)
        except ChannelHangup:
            raise self._mark_hung_up(HangupReason.RESULT_MINUS_ONE) from None
        if status.result_int is None or status.result_int < 0:
            raise self._mark_hung_up(HangupReason.RESULT_MINUS_ONE)
        raise AgiCommandFailed(reply)

    def close(self) -> None:
        if self.state is not _CLOSED:  # as _mark_closed(), without the signal nobody raises here
            self.state = _CLOSED
            if self.hangup_reason is None:
                self.hangup_reason = HangupReason.CONNECTION_CLOSED
        if self._connection is not None:
            self._connection.close()
        else:
            self._lines.close()

    async def synchronize(self) -> int:
        """Make sure the next reply we read answers our next command; returns lines discarded.

        Asterisk writes the caller's name and number raw into the environment, so a name can
        carry whole lines (a fake end of environment, fake ``200`` replies) that would otherwise
        be read as replies. Asterisk sent all of them before it read any command from us, so we
        ask it to echo a random nonce and drop everything that arrives before the echo.
        """
        nonce = _sync_nonce()
        command = b'GET FULL VARIABLE "' + nonce + b'"\n'  # the nonce needs no escaping (see _sync_nonce)
        echo = b"200 result=1 (" + nonce + b")"
        echo_line = echo + b"\n"
        discarded = 0
        self._busy = True
        try:
            self._deadline = self._loop.time() + self._command_timeout
            if self._connection is not None:
                self._connection.write(command)
            else:
                self._lines.write(command)
            while True:
                raw = await self._read_raw_line()
                if not raw.endswith(b"\n"):  # the stream ended inside a line, or before one
                    raise self._mark_closed()
                if raw == echo_line:
                    break
                line = raw.rstrip(b"\r\n")
                if line == echo:
                    break
                if line == b"HANGUP":
                    self._mark_hung_up(HangupReason.HANGUP_LINE)
                discarded += 1
        except TimeoutError:
            self.close()
            raise AgiTimeout("no reply to the synchronizing command") from None
        except (ConnectionError, OSError):
            raise self._mark_closed() from None
        except asyncio.CancelledError:
            self.close()
            raise
        finally:
            self._busy = False
        if discarded:
            log.warning(
                "call %s: dropped %d stray line(s) before the first reply (hostile caller ID?)",
                self.env.uniqueid,
                discarded,
            )
        return discarded

    # -- the typed API --------------------------------------------------------------------

    async def answer(self) -> None:
        await self._execute(_ANSWER, live=True)

    async def stream_file(self, path: str, escape_digits: str = "", *, max_seconds: float = 120.0) -> str | None:
        """Play a sound file; return the escape digit that interrupted it, if any.

        A file Asterisk cannot play is logged and skipped: a missing prompt must not end a call.
        """
        try:
            reply = await self._execute(command_line("STREAM FILE", (path, _check_escape_digits(escape_digits))),
                                        extra_time=max_seconds, live=True)
        except AgiCommandFailed:
            log.error("call %s: Asterisk could not play %r", self.env.uniqueid, path)
            return None
        return _digit_from_result(reply)

    async def ask(self, path: str, escape_digits: str, timeout_ms: int, *, max_seconds: float = 120.0) -> str | None:
        """Play a prompt that any of ``escape_digits`` interrupts, then wait ``timeout_ms`` for a key:
        the key, or None. stream_file and wait_for_digit in one coroutine (a menu's every key)."""
        try:
            reply = await self._execute(command_line("STREAM FILE", (path, _check_escape_digits(escape_digits))),
                                        extra_time=max_seconds, live=True)
            digit = _digit_from_result(reply)
        except AgiCommandFailed:
            log.error("call %s: Asterisk could not play %r", self.env.uniqueid, path)
            digit = None
        if digit is not None:
            return digit
        reply = await self._execute(command_line("WAIT FOR DIGIT", (timeout_ms,)),
                                    extra_time=max(timeout_ms, 0) / 1000, live=True)
        return _digit_from_result(reply)

    async def get_data(
        self, path: str, timeout_ms: int, max_digits: int, *, max_seconds: float = 120.0
    ) -> DigitsResult:
        """Play a prompt and collect up to ``max_digits`` digits (``#`` ends entry)."""
        reply = await self._execute(command_line("GET DATA", (path, timeout_ms, max_digits)),
                                    extra_time=max_seconds + timeout_ms * max(1, max_digits) / 1000, live=True)
        digits = "".join(ch for ch in reply.result if ch in DTMF_DIGITS)
        return DigitsResult(digits, timed_out=reply.data == "timeout")

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        reply = await self._execute(command_line("WAIT FOR DIGIT", (timeout_ms,)),
                                    extra_time=max(timeout_ms, 0) / 1000, live=True)
        return _digit_from_result(reply)

    async def say_digits(self, digits: str, escape_digits: str = "") -> str | None:
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError("SAY DIGITS takes decimal digits only")
        reply = await self._execute(encode_unique_command("SAY DIGITS", digits, _check_escape_digits(escape_digits)),
                                    extra_time=len(digits) * 2.0, live=True)
        return _digit_from_result(reply)

    async def say_number(self, number: int, escape_digits: str = "") -> str | None:
        reply = await self._execute(
            encode_unique_command("SAY NUMBER", int(number), _check_escape_digits(escape_digits)),
            extra_time=20.0, live=True)
        return _digit_from_result(reply)

    async def say_date(self, epoch_seconds: int, escape_digits: str = "") -> str | None:
        """A date in the channel's language (Asterisk's SAY DATE: weekday, month, day)."""
        reply = await self._execute(
            encode_unique_command("SAY DATE", int(epoch_seconds), _check_escape_digits(escape_digits)),
            extra_time=20.0, live=True)
        return _digit_from_result(reply)

    async def record_file(
        self,
        path: str,
        file_format: str = "wav",
        escape_digits: str = "#",
        *,
        timeout_ms: int = 10000,
        silence_seconds: int | None = 2,
        beep: bool = False,
    ) -> RecordResult:
        """Record what the caller says. The bracketed word of the reply says how it ended: only
        ``(dtmf)`` carries a key. With ``(timeout)`` (silence or the length cap) the result number
        is whatever Asterisk's last wait returned, often positive: it is not a key."""
        arguments: list[str | int] = [path, file_format, _check_escape_digits(escape_digits), timeout_ms]
        if beep:
            arguments.append("beep")
        if silence_seconds:
            arguments.append(f"s={int(silence_seconds)}")
        reply = await self._execute(encode_unique_command("RECORD FILE", *arguments), extra_time=timeout_ms / 1000 + 5)
        ended = (reply.data or "").strip()
        end_position = int(reply.fields.get("endpos", "0") or 0)
        if ended == "dtmf":
            code = reply.result_int or 0
            digit = chr(code) if 0 < code < 128 and chr(code) in DTMF_DIGITS else None
            return RecordResult("dtmf" if digit else "timeout", digit, end_position)
        if ended in ("writefile", "randomerror"):  # the file could not be written (disk full, no folder)
            return RecordResult("writefile", None, end_position)
        if ended in ("hangup", "waitfor") or reply.result_int == -1:
            try:
                status = await self._execute(_CHANNEL_STATUS)
            except ChannelHangup:
                raise self._mark_hung_up(HangupReason.RESULT_MINUS_ONE) from None
            if status.result_int is None or status.result_int < 0 or ended == "hangup":
                raise self._mark_hung_up(HangupReason.RESULT_MINUS_ONE)
            return RecordResult("writefile", None, end_position)
        return RecordResult("timeout", None, end_position)

    async def get_variable(self, name: str) -> str | None:
        """A channel variable or function value; ``None`` when unset. Works on a dead channel."""
        reply = await self._execute(command_line("GET VARIABLE", (name,)), data_is_rest=True, dead_ok=True)
        if reply.result != "1":
            return None
        return reply.data or ""

    async def get_variables(self, names: Sequence[str]) -> dict[str, str]:
        """Several channel variables in one command instead of one each (``""`` when unset).
        Plain variable names only. Works on a dead channel.

        Asterisk evaluates ``${CSV_QUOTE(${A})},${CSV_QUOTE(${B})},…`` and the values come back as
        one CSV line, so a value holding a comma, a quote or a parenthesis cannot shift the others.
        """
        for name in names:
            if not _VARIABLE_NAME.match(name):
                raise ValueError(f"not a plain variable name: {name!r}")
        expression = ",".join(f"${{CSV_QUOTE(${{{name}}})}}" for name in names)
        reply = await self._execute(command_line("GET FULL VARIABLE", (expression,)), data_is_rest=True, dead_ok=True)
        rows = list(csv.reader([reply.data or ""])) if reply.result == "1" else []
        if len(rows) != 1 or len(rows[0]) != len(names):
            raise AgiProtocolError(f"{len(names)} values asked, reply {reply.text!r}")
        return dict(zip(names, rows[0], strict=True))

    async def set_variable(self, name: str, value: str | int) -> None:
        """Set a channel variable. Works on a dead channel (useful for the dialplan's fallback)."""
        if self.state is _CLOSED:  # as _execute would say, before a value too long to send says otherwise
            raise ChannelHangup(self.hangup_reason or HangupReason.CONNECTION_CLOSED)
        await self._execute(encode_unique_command("SET VARIABLE", name, str(value)), dead_ok=True)

    async def set_variables(self, values: Mapping[str, str | int]) -> None:
        """Set several channel variables, in this order: one round trip (Asterisk's MSet) instead
        of one each when every name and value is plain, else one SET VARIABLE each. On a dead
        channel (EXEC is refused there) also one each. Values are text or whole numbers."""
        line = _mset_line(values) if len(values) > 1 else None
        if line is not None:
            if self.state is not _HUNG_UP:
                try:
                    reply = await self._execute(line)
                    if reply.result == "0":
                        return
                except (ChannelHangup, AgiCommandError):  # hung up as it was sent (511), or refused
                    if self.state is _CLOSED:
                        raise
        for name, value in values.items():
            await self.set_variable(name, value)

    async def exec(self, application: str, *arguments: str, max_seconds: float = 60.0,
                   caller_data: bool = False) -> int:
        """Run a dialplan application. Arguments are joined with commas, each escaped for it.
        ``caller_data``: arguments of this call only (see _execute)."""
        joined = ",".join(
            a.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace('"', '\\"') for a in arguments
        )
        arguments = (application, joined)
        line = encode_unique_command("EXEC", *arguments) if caller_data else command_line("EXEC", arguments)
        reply = await self._execute(line, extra_time=max_seconds, live=True)
        code = reply.result_int
        if code == -2:
            raise AgiCommandError(reply)
        return code if code is not None else 0

    async def play_detecting_talk(self, path: str, *, silence_ms: int, min_ms: int, max_ms: int,
                                  max_seconds: float = 120.0) -> TalkResult:
        """Play a prompt that the caller's speech interrupts (Asterisk's BackgroundDetect): it stops
        once the caller said something between ``min_ms`` and ``max_ms`` long followed by
        ``silence_ms`` of silence, or on a key (any key: the dialplan context lets every key match)."""
        await self.set_variable("TALK_DETECTED", "")
        code = await self.exec("BackgroundDetect", path, str(silence_ms), str(min_ms), str(max_ms),
                               max_seconds=max_seconds)
        digit = chr(code) if 0 < code < 128 and chr(code) in DTMF_DIGITS else None
        talked = await self.get_variable("TALK_DETECTED")
        return TalkResult(digit, int(talked) if talked and talked.isascii() and talked.isdigit() else None)

    async def start_capture(self, received_path: str, mixed_path: str) -> None:
        """Keep what the caller says from now on (MixMonitor; ``received_path``: their side only).
        Its id goes to CAPTURE_VARIABLE, so only this capture is stopped, here or by the dialplan
        should the controller be lost before it stops it."""
        await self.exec("MixMonitor", mixed_path, f"i({CAPTURE_VARIABLE})r({received_path})", caller_data=True)

    async def stop_capture(self) -> None:
        """Stop the capture (a caller who hung up stopped it already)."""
        if self.state is _LIVE:
            try:
                capture = await self.get_variable(CAPTURE_VARIABLE)
                if capture:
                    await self.exec("StopMixMonitor", capture, caller_data=True)
                    await self.set_variable(CAPTURE_VARIABLE, "")
            except (ChannelHangup, AgiCommandFailed):
                pass

    async def verbose(self, message: str, level: int = 3) -> None:
        await self._execute(encode_unique_command("VERBOSE", message, level), dead_ok=True)

    async def hangup(self) -> None:
        """Hang up the caller. Hanging up an already-gone caller is not an error."""
        if self.state is not _LIVE:
            return
        try:
            await self._execute(_HANGUP)
        except ChannelHangup:
            pass
        self._mark_hung_up(HangupReason.HANGUP_LINE)
