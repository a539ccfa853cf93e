"""The channel fed with bytes recorded from a real Asterisk 22 (tests/fixtures/agi_wire)."""

import asyncio
from pathlib import Path

import pytest

from ivr.agi.channel import AgiCommandError, Channel, ChannelHangup, ChannelState, HangupReason
from ivr.agi.connection import StreamLines
from ivr.agi.protocol import parse_environment

WIRE = Path(__file__).resolve().parent.parent / "fixtures" / "agi_wire"


def wire(name: str) -> bytes:
    return (WIRE / name).read_bytes()


async def replay(*replies: bytes) -> tuple[Channel, asyncio.StreamWriter]:
    """A channel whose reader holds the recorded replies; what it writes goes to a sink."""
    reader = asyncio.StreamReader()
    for reply in replies:
        reader.feed_data(reply)
    _, writer = await asyncio.open_connection(*await _sink())
    return Channel(StreamLines(reader, writer), parse_environment(wire("env_plain.bin")), command_timeout=1), writer


_SINK: list[asyncio.Server] = []


async def _sink() -> tuple[str, int]:
    async def drain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await asyncio.start_server(drain, "127.0.0.1", 0)
    _SINK.append(server)
    return "127.0.0.1", server.sockets[0].getsockname()[1]


@pytest.fixture(autouse=True)
async def _close_sinks():
    yield
    for server in _SINK:
        server.close()
    _SINK.clear()


def test_recorded_environments() -> None:
    env = parse_environment(wire("env_query_string.bin"))
    assert env.script == "hotline" and env.query == {"entry": "10000"}
    assert env.uniqueid == "f1ec8464-b86e-410a-9229-9c30b970678b"
    quoted = parse_environment(wire("env_callerid_quote.bin"))
    assert quoted.caller_name == 'A"B' and quoted.caller_number == "123"
    finish = parse_environment(wire("env_finish_dead_channel.bin"))
    assert finish.script == "finish" and finish.get("context") == "hotline-finish"


async def test_recorded_replies_in_a_call() -> None:
    channel, writer = await replay(
        wire("stream_file_dtmf.bin"),
        wire("get_data_timeout.bin"),
        wire("get_data_digits.bin"),
        wire("wait_for_digit_timeout.bin"),
        wire("get_variable_set.bin"),
        wire("get_variable_unset.bin"),
        wire("get_variable_empty.bin"),
        wire("set_variable.bin"),
        wire("exec_wait.bin"),
        wire("say_digits.bin"),
    )
    assert await channel.stream_file("x", "1") == "1"
    assert (await channel.get_data("x", 1000, 1)).timed_out
    assert (await channel.get_data("x", 1000, 1)).digits == "2"
    assert await channel.wait_for_digit(1000) is None
    assert await channel.get_variable("CALLER_KEYS") == "12"
    assert await channel.get_variable("NOPE") is None
    assert await channel.get_variable("EMPTY") == ""
    await channel.set_variable("X", "1")
    assert await channel.exec("Wait", "1") == 0
    assert await channel.say_digits("123") is None
    writer.close()


async def test_recorded_usage_block_then_invalid_command() -> None:
    channel, writer = await replay(wire("usage_error_get_data.bin"), wire("invalid_command.bin"), wire("exec_wait.bin"))
    with pytest.raises(AgiCommandError):
        await channel.get_data("x", 1000, 1)
    with pytest.raises(AgiCommandError):
        await channel.answer()
    assert await channel.exec("Wait", "1") == 0  # still in sync
    writer.close()


async def test_recorded_hangup_sequence() -> None:
    channel, writer = await replay(
        wire("sighup_wait_for_digit_hangup.bin"),
        wire("sighup_next_command.bin"),
        wire("finish_get_variable_memberinterface.bin"),
    )
    # result=-1, then the CHANNEL STATUS probe is answered by "HANGUP" and a reply: a hangup.
    with pytest.raises(ChannelHangup) as caught:
        await channel.wait_for_digit(5000)
    assert caught.value.reason is HangupReason.HANGUP_LINE
    # Replies stay in step: the dead-channel-safe GET VARIABLE gets its own reply.
    assert await channel.get_variable("MEMBERINTERFACE") == "Local/talk3@hotline-test-agent/n"
    assert channel.state is ChannelState.HUNG_UP
    writer.close()


async def test_missing_file_is_not_a_hangup_but_a_real_hangup_is() -> None:
    channel, writer = await replay(
        wire("stream_file_missing.bin"), b"200 result=6\n",  # CHANNEL STATUS: up
        wire("get_data_digits_then_timeout.bin"),
        wire("sighup_wait_for_digit_hangup.bin"), wire("dead_channel_511.bin"),  # CHANNEL STATUS refused
    )
    assert await channel.stream_file("no-such-file") is None
    assert channel.state is ChannelState.LIVE
    digits = await channel.get_data("x", 2500, 4)
    assert (digits.digits, digits.timed_out) == ("1", True)
    with pytest.raises(ChannelHangup):
        await channel.wait_for_digit(15000)
    assert channel.state is ChannelState.HUNG_UP
    writer.close()


async def test_recorded_dead_channel_reply() -> None:
    channel, writer = await replay(wire("dead_channel_511.bin"))
    with pytest.raises(ChannelHangup) as caught:
        await channel.stream_file("x")
    assert caught.value.reason is HangupReason.DEAD_CHANNEL
    writer.close()
