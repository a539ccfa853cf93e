"""The channel API against a scripted Asterisk peer over TCP.

A fake peer is right here: these are protocol faults (HANGUP lines mid-reply, 520 blocks, EOF,
stalls) that a real Asterisk cannot be made to produce on demand. Real-call behaviour is in e2e.
"""

import asyncio
import re
from collections.abc import AsyncIterator, Callable

import pytest

from ivr.agi.channel import AgiCommandError, AgiTimeout, Channel, ChannelHangup, ChannelState, HangupReason
from ivr.agi.connection import StreamLines
from ivr.agi.protocol import cached_command_lines, parse_environment
from ivr.agi.server import FastAgiServer

SYNC = re.compile(rb'^GET FULL VARIABLE "(hotline-sync-[0-9a-f]+)"\n$')


async def answer_sync(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, before: bytes = b"") -> None:
    """Play Asterisk's part of the controller's first command: echo its nonce."""
    line = await asyncio.wait_for(reader.readline(), 2)
    match = SYNC.match(line)
    assert match, line
    writer.write(before + b"200 result=1 (" + match.group(1) + b")\n")

Script = list[tuple[bytes, bytes]]  # (expected command line, raw reply bytes)


async def channel_with_peer(
    script: Script, *, timeout: float = 1.0
) -> tuple[Channel, list[bytes], asyncio.Task[None]]:
    """A Channel whose peer answers each expected command with the scripted bytes."""
    received: list[bytes] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _, reply in script:
            line = await reader.readline()
            received.append(line)
            if reply == b"<eof>":
                writer.close()
                return
            if reply == b"<stall>":
                await asyncio.sleep(10)
            writer.write(reply)
            await writer.drain()
        await reader.read()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    task = asyncio.create_task(server.serve_forever())
    env = parse_environment(b"agi_uniqueid: 1.1\nagi_network_script: hotline\n")
    return Channel(StreamLines(reader, writer), env, command_timeout=timeout), received, task


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., object]]:
    tasks: list[asyncio.Task[None]] = []
    channels: list[Channel] = []

    async def factory(script: Script, **kw: float) -> tuple[Channel, list[bytes]]:
        channel, received, task = await channel_with_peer(script, **kw)
        tasks.append(task)
        channels.append(channel)
        return channel, received

    yield factory
    for channel in channels:
        channel.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_ask_plays_then_waits_for_a_key_unless_one_stopped_the_prompt(make) -> None:
    channel, received = await make([
        (b"", b"200 result=50 endpos=8000\n"),  # "2" over the prompt: no wait
        (b"", b"200 result=0 endpos=16000\n"), (b"", b"200 result=51\n"),  # played out, then "3"
        (b"", b"200 result=-1 endpos=0\n"), (b"", b"200 result=6\n"),  # a file that will not play,
        (b"", b"200 result=0\n"),  # ... skipped (the channel is up): the wait, and no key
    ])
    assert await channel.ask("/p/en/menu", "123", 5000) == "2"
    assert await channel.ask("/p/en/menu", "123", 5000) == "3"
    assert await channel.ask("/p/en/missing", "123", 4000) is None
    assert received == [
        b'STREAM FILE "/p/en/menu" "123"\n',
        b'STREAM FILE "/p/en/menu" "123"\n', b'WAIT FOR DIGIT "5000"\n',
        b'STREAM FILE "/p/en/missing" "123"\n', b"CHANNEL STATUS\n", b'WAIT FOR DIGIT "4000"\n',
    ]


async def test_stream_file_returns_the_escape_digit(make) -> None:
    channel, received = await make([(b"", b"200 result=49 endpos=8000\n")])
    assert await channel.stream_file("/p/zh/main", "123") == "1"
    assert received == [b'STREAM FILE "/p/zh/main" "123"\n']


async def test_get_data_timeout_and_digits(make) -> None:
    channel, _ = await make([(b"", b"200 result= (timeout)\n"), (b"", b"200 result=1234\n")])
    first = await channel.get_data("/p/x", 1000, 4)
    assert first.digits == "" and first.timed_out
    second = await channel.get_data("/p/x", 1000, 4)
    assert second.digits == "1234" and not second.timed_out


async def test_unsolicited_hangup_line_keeps_replies_in_sync(make) -> None:
    channel, _ = await make([(b"", b"HANGUP\n200 result=-1 endpos=0\n"), (b"", b"200 result=1 (route)\n")])
    with pytest.raises(ChannelHangup) as caught:
        await channel.stream_file("/p/x", "1")
    assert caught.value.reason is HangupReason.HANGUP_LINE
    assert channel.state is ChannelState.HUNG_UP
    # A dead-channel-safe command still works and gets its own reply, not a stale one.
    assert await channel.get_variable("HOTLINE_DONE") == "route"
    with pytest.raises(ChannelHangup):
        await channel.answer()


async def test_usage_block_is_read_to_its_end(make) -> None:
    usage = b"520-Invalid command syntax.  Proper usage follows:\nUsage: GET DATA <file>\n520 End of proper usage.\n"
    channel, _ = await make([(b"", usage), (b"", b"200 result=0\n")])
    with pytest.raises(AgiCommandError) as caught:
        await channel.exec("Wait", "1")
    assert "End of proper usage" in caught.value.reply.text
    assert await channel.exec("Wait", "1") == 0


async def test_invalid_command_raises_command_error(make) -> None:
    channel, _ = await make([(b"", b"510 Invalid or unknown command\n")])
    with pytest.raises(AgiCommandError):
        await channel.answer()


async def test_dead_channel_reply_is_a_hangup_signal(make) -> None:
    channel, _ = await make([(b"", b"511 Command Not Permitted on a dead channel or intercept routine\n")])
    with pytest.raises(ChannelHangup) as caught:
        await channel.stream_file("/p/x")
    assert caught.value.reason is HangupReason.DEAD_CHANNEL


async def test_result_minus_one_is_a_hangup_signal(make) -> None:
    dead = b"511 Command Not Permitted on a dead channel or intercept routine\n"
    channel, received = await make([(b"", b"200 result=-1\n"), (b"", dead)])
    with pytest.raises(ChannelHangup) as caught:
        await channel.wait_for_digit(1000)
    assert received[-1] == b"CHANNEL STATUS\n"  # the probe that told hangup from failure
    assert caught.value.reason is HangupReason.DEAD_CHANNEL


async def test_eof_is_a_hangup_signal(make) -> None:
    channel, _ = await make([(b"", b"<eof>")])
    with pytest.raises(ChannelHangup) as caught:
        await channel.answer()
    assert caught.value.reason is HangupReason.CONNECTION_CLOSED
    assert channel.state is ChannelState.CLOSED


async def test_a_stalled_peer_hits_the_command_deadline(make) -> None:
    channel, _ = await make([(b"", b"<stall>")], timeout=0.2)
    with pytest.raises(AgiTimeout):
        await channel.set_variable("X", "1")
    assert channel.state is ChannelState.CLOSED


async def test_a_command_cancelled_while_its_reply_is_due_ends_the_conversation(make) -> None:
    channel, _ = await make([(b"", b"<stall>")], timeout=5.0)
    command = asyncio.create_task(channel.set_variable("X", "1"))
    await asyncio.sleep(0.05)
    command.cancel()
    with pytest.raises(asyncio.CancelledError):
        await command
    assert channel.state is ChannelState.CLOSED  # its late reply can never answer another command
    with pytest.raises(ChannelHangup):
        await channel.set_variable("Y", "2")


async def test_a_callers_data_is_not_kept_in_the_cache_of_command_lines(make) -> None:
    channel, received = await make([(b"", b"200 result=0\n")] * 3)
    cached = cached_command_lines()
    await channel.set_variable("ACCOUNT", "4000123412341234")
    await channel.say_digits("4000123412341234")
    assert cached_command_lines() == cached
    await channel.stream_file("hotline/en/top_menu-cache-test")  # a prompt recurs: cached
    assert cached_command_lines() == cached + 1
    assert received[:2] == [b'SET VARIABLE "ACCOUNT" "4000123412341234"\n', b'SAY DIGITS "4000123412341234" ""\n']


async def test_unset_variable_is_none(make) -> None:
    channel, _ = await make([(b"", b"200 result=0\n")])
    assert await channel.get_variable("NOPE") is None


async def test_exec_escapes_commas_in_arguments(make) -> None:
    channel, received = await make([(b"", b"200 result=0\n")])
    await channel.exec("Playback", "a,b", "noanswer")
    assert received == [b'EXEC "Playback" "a\\\\,b,noanswer"\n']


async def test_server_drops_connection_closed_before_headers_and_serves_the_next() -> None:
    seen: list[str] = []

    async def handler(channel: Channel) -> None:
        seen.append(channel.env.uniqueid)
        await channel.answer()

    server = FastAgiServer({"hotline": handler}, port=0, header_timeout=0.5)
    await server.start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network: yes\n")
        writer.close()
        stalled_reader, stalled = await asyncio.open_connection("127.0.0.1", server.port)  # never sends
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network_script: hotline?x=1\nagi_uniqueid: 42.1\n\n")
        await answer_sync(reader, writer)
        assert await asyncio.wait_for(reader.readline(), 2) == b"ANSWER\n"
        writer.write(b"200 result=0\n")
        assert await asyncio.wait_for(reader.read(), 2) == b""  # handler done: connection closed
        assert await asyncio.wait_for(stalled_reader.read(), 2) == b""  # header deadline closed it
        stalled.close()
        writer.close()
    finally:
        await server.stop(0.5)
    assert seen == ["42.1"]
    assert server.active_sessions == 0


async def test_blank_line_inside_caller_name_does_not_desync_replies() -> None:
    names: list[str] = []

    async def handler(channel: Channel) -> None:
        names.append(channel.env.caller_name)
        await channel.answer()

    server = FastAgiServer({"hotline": handler}, port=0)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network_script: hotline\nagi_uniqueid: 7.1\nagi_calleridname: evil\n\n"
                     b"agi_language: en\nagi_threadid: 1234\n\n")
        await answer_sync(reader, writer)
        assert await asyncio.wait_for(reader.readline(), 2) == b"ANSWER\n"
        writer.write(b"200 result=0\n")
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
    finally:
        await server.stop(0.5)
    assert names == ["evil"]


async def test_fake_replies_in_a_caller_name_are_dropped_before_the_first_command() -> None:
    """A caller name forging the end of the environment and then a reply (review finding H1)."""
    answers: list[str | None] = []

    async def handler(channel: Channel) -> None:
        answers.append(await channel.get_variable("HOTLINE_DONE"))

    server = FastAgiServer({"hotline": handler}, port=0)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        forged = b"x\nagi_threadid: 1\n\n200 result=1 (pwned)\n"
        writer.write(b"agi_network_script: hotline\nagi_uniqueid: 8.1\nagi_calleridname: " + forged
                     + b"agi_callingpres: 0\nagi_threadid: 99\n\n")
        await answer_sync(reader, writer)
        assert await asyncio.wait_for(reader.readline(), 2) == b'GET VARIABLE "HOTLINE_DONE"\n'
        writer.write(b"200 result=0\n")
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
    finally:
        await server.stop(0.5)
    assert answers == [None]


async def test_record_file_endings_are_told_by_their_word_not_their_number(make) -> None:
    channel, _ = await make([
        (b"RECORD FILE", b"200 result=1834 (timeout) endpos=16000\n"),  # silence: the number is not a key
        (b"RECORD FILE", b"200 result=49 (dtmf) endpos=800\n"),
        (b"RECORD FILE", b"200 result=-1 (writefile)\n"),  # disk full, or no folder
        (b"RECORD FILE", b"200 result=-1 (hangup) endpos=300\n"),
        (b"CHANNEL STATUS", b"511 Command Not Permitted on a dead channel or intercept routine\n"),
    ])
    silence = await channel.record_file("/spool/a", "sln", "1", timeout_ms=5000)
    assert (silence.ended_by, silence.digit, silence.end_position) == ("timeout", None, 16000)
    key = await channel.record_file("/spool/b", "sln", "1", timeout_ms=5000)
    assert (key.ended_by, key.digit) == ("dtmf", "1")
    full = await channel.record_file("/spool/c", "sln", "1", timeout_ms=5000)
    assert full.ended_by == "writefile"
    with pytest.raises(ChannelHangup):
        await channel.record_file("/spool/d", "sln", "1", timeout_ms=5000)


async def test_several_variables_come_back_in_one_command_whatever_their_values_hold(make) -> None:
    # What Asterisk answers for ${CSV_QUOTE(..)},…: each value quoted, inner quotes doubled.
    reply = b'200 result=1 ("route","a, b) (c ""q""","")\n'
    channel, received = await make([(b"", reply), (b"", b"200 result=1 (x)\n")])
    values = await channel.get_variables(["HOTLINE_DONE", "QUEUENAME", "ABANDONED"])
    assert values == {"HOTLINE_DONE": "route", "QUEUENAME": 'a, b) (c "q"', "ABANDONED": ""}
    assert received == [b'GET FULL VARIABLE "${CSV_QUOTE(${HOTLINE_DONE})},${CSV_QUOTE(${QUEUENAME})},'
                        b'${CSV_QUOTE(${ABANDONED})}"\n']
    with pytest.raises(ValueError):
        await channel.get_variables(["OK", "X}${SHELL(rm -rf /)"])  # names are never expressions
    from ivr.agi.protocol import AgiProtocolError

    with pytest.raises(AgiProtocolError):  # a reply that does not hold one value per name
        await channel.get_variables(["A", "B"])


async def test_plain_variables_are_set_in_one_command_and_the_rest_one_by_one(make) -> None:
    channel, received = await make([
        (b"", b"200 result=0\n"),  # EXEC MSet
        (b"", b"200 result=1\n"), (b"", b"200 result=1\n"),  # a value MSet could misread: one each
        (b"", b"511 Command Not Permitted on a dead channel or intercept routine\n"),  # EXEC on a dead channel
        (b"", b"200 result=1\n"), (b"", b"200 result=1\n"),
    ])
    await channel.set_variables({"HOTLINE_QUEUE": "hotline-general", "CHANNEL(language)": "zh", "HOTLINE_RULE": "",
                                 "HOTLINE_PRIORITY": 3, "HOTLINE_DONE": "route"})
    assert received == [b'EXEC "MSet" "HOTLINE_QUEUE=hotline-general,CHANNEL(language)=zh,HOTLINE_RULE=,'
                        b'HOTLINE_PRIORITY=3,HOTLINE_DONE=route"\n']
    # A comma, a quote, a space or a "$" would be read by MSet's parsing or the dialplan: never sent that way.
    await channel.set_variables({"HOTLINE_ANNOUNCED": "1,HOTLINE_DONE=hangup", "HOTLINE_DONE": "route"})
    assert received[1:] == [b'SET VARIABLE "HOTLINE_ANNOUNCED" "1,HOTLINE_DONE=hangup"\n',
                            b'SET VARIABLE "HOTLINE_DONE" "route"\n']
    # Refused (the caller hung up as it was sent): set one by one, as SET VARIABLE works on a dead channel.
    await channel.set_variables({"HOTLINE_A": "1", "HOTLINE_B": "2"})
    assert received[3:] == [b'EXEC "MSet" "HOTLINE_A=1,HOTLINE_B=2"\n', b'SET VARIABLE "HOTLINE_A" "1"\n',
                            b'SET VARIABLE "HOTLINE_B" "2"\n']


async def test_a_variable_set_again_with_an_equal_value_of_another_type_is_sent_as_it_is(make) -> None:
    """True == 1 as keys of the cache of MSet lines: the line sent for one is never the other's."""
    from ivr.agi import channel as channel_module

    channel, received = await make([(b"", b"200 result=0\n")] * 3)
    await channel.set_variables({"A": True, "B": "x"})  # type: ignore[dict-item]
    channel_module._MSET_LINES.clear()
    await channel.set_variables({"A": 1, "B": "x"})
    await channel.set_variables({"A": True, "B": "x"})  # type: ignore[dict-item]
    assert received[1] == b'EXEC "MSet" "A=1,B=x"\n'
    assert received[2] == received[0]  # as a fresh one: not the cached line of A=1


async def test_variables_too_long_for_one_line_go_one_each(make) -> None:
    channel, received = await make([(b"", b"200 result=1\n")] * 2)
    await channel.set_variables({"A": "a" * 4500, "B": "b" * 4500})
    assert [line[:18] for line in received] == [b'SET VARIABLE "A" "', b'SET VARIABLE "B" "']


async def test_a_reply_after_a_hangup_line_is_still_due_by_the_commands_deadline() -> None:
    """The lines of one reply share the command's deadline: a HANGUP line does not restart it."""
    from ivr.agi.channel import AgiTimeout
    from ivr.agi.connection import AgiConnection
    from tests.unit.test_agi_connection import ENV, Transport

    conn = AgiConnection(lambda _, raw: None, lambda peer: True, header_timeout=5.0)
    conn.connection_made(Transport())
    conn.data_received(ENV)
    channel = Channel(conn, parse_environment(ENV), command_timeout=0.5)
    command = asyncio.create_task(channel.set_variable("X", "1"))
    await asyncio.sleep(0.35)
    conn.data_received(b"HANGUP\n")
    await asyncio.sleep(0.4)  # past the command's 0.5 s
    conn.data_received(b"200 result=1\n")
    with pytest.raises(AgiTimeout):
        await command
