"""AgiConnection, the bytes under a server's Channel, fed the way a transport feeds it: whole
reads, reads cut anywhere, several lines in one read. Each way must give the same lines."""

from __future__ import annotations

import asyncio

import pytest

from ivr.agi.connection import AgiConnection, Deadlines

ENV = b"agi_network_script: hotline\nagi_uniqueid: 1.1\nagi_callerid: 100\nagi_threadid: 7\n\n"


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.paused = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:  # type: ignore[override]
        pass

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def connection() -> tuple[AgiConnection, list[bytes]]:
    environments: list[bytes] = []
    conn = AgiConnection(lambda _, raw: environments.append(raw), lambda peer: True, header_timeout=5.0)
    conn.connection_made(Transport())
    return conn, environments


@pytest.mark.parametrize("cut", [0, 1, 20, len(ENV) - 1])
async def test_the_environment_is_the_same_whole_or_cut(cut: int) -> None:
    conn, environments = connection()
    if cut:
        conn.data_received(ENV[:cut])
    conn.data_received(ENV[cut:])
    assert environments == [ENV]


async def test_reply_bytes_after_the_environment_in_the_same_read_are_lines() -> None:
    conn, environments = connection()
    conn.data_received(ENV + b"200 result=1\n")
    assert environments == [ENV]
    assert await conn.readline(1.0) == b"200 result=1\n"


@pytest.mark.parametrize(
    "reads",
    [
        [b"200 result=0\n"],  # one whole line, awaited: handed over as it is
        [b"200 res", b"ult=0\n"],
        [b"2", b"00 result=0", b"\n"],
    ],
)
async def test_a_line_is_the_same_however_it_was_cut(reads: list[bytes]) -> None:
    conn, _ = connection()
    conn.data_received(ENV)
    line = conn.readline(1.0)
    for data in reads:
        conn.data_received(data)
    assert await line == b"200 result=0\n"


async def test_two_lines_in_one_read_are_two_readlines() -> None:
    conn, _ = connection()
    conn.data_received(ENV)
    first = conn.readline(1.0)
    conn.data_received(b"HANGUP\n200 result=0\n")
    assert await first == b"HANGUP\n"
    assert await conn.readline(1.0) == b"200 result=0\n"


async def test_a_reader_cancelled_before_its_line_came_leaves_the_line_to_the_next_reader() -> None:
    conn, _ = connection()
    conn.data_received(ENV)
    first = conn.readline(1.0)
    first.cancel()
    conn.data_received(b"200 result=1\n")
    assert await conn.readline(1.0) == b"200 result=1\n"


async def test_the_end_of_the_stream_gives_what_is_left_then_nothing() -> None:
    conn, _ = connection()
    conn.data_received(ENV)
    waiting = conn.readline(1.0)
    conn.data_received(b"200 resu")
    conn.eof_received()
    assert await waiting == b"200 resu"
    assert await conn.readline(1.0) == b""


async def test_a_reply_that_never_comes_times_out() -> None:
    conn, _ = connection()
    conn.data_received(ENV)
    with pytest.raises(TimeoutError):
        await conn.readline(0.05)
    conn.data_received(b"200 result=0\n")  # late: it is still read, by the next reader
    assert await conn.readline(1.0) == b"200 result=0\n"


async def test_only_one_reader_at_a_time() -> None:
    conn, _ = connection()
    conn.data_received(ENV)
    first = conn.readline(1.0)
    with pytest.raises(RuntimeError):
        conn.readline(1.0)
    first.cancel()


async def test_a_flood_of_lines_pauses_reading_and_every_line_comes_in_order() -> None:
    """A peer that sends lines nobody asked for: reading pauses past MAX_QUEUED_LINES and resumes
    as they are taken; taken lines are let go even while the queue never runs dry."""
    from ivr.agi.connection import MAX_QUEUED_LINES

    conn, _ = connection()
    conn.data_received(ENV)
    transport = conn._transport
    assert isinstance(transport, Transport)
    sent = 0
    taken: list[bytes] = []
    paused_seen = False

    def send(count: int) -> None:
        nonlocal sent
        conn.data_received(b"".join(b"200 result=%d\n" % (sent + i) for i in range(count)))
        sent += count

    send(30)
    for _ in range(50):  # the queue stays between 30 and 70 lines: it never runs dry
        send(40)
        paused_seen = paused_seen or transport.paused
        for _ in range(40):
            taken.append(await conn.readline(1.0))
        assert len(conn._lines) <= 3 * MAX_QUEUED_LINES  # what was taken is not kept
    assert paused_seen
    while conn._queued():
        taken.append(await conn.readline(1.0))
    assert taken == [b"200 result=%d\n" % i for i in range(sent)]
    assert not transport.paused


def sharing(deadlines: Deadlines, count: int) -> list[AgiConnection]:
    """``count`` connections past their environment, their deadlines kept by ``deadlines``."""
    connections = []
    for _ in range(count):
        conn = AgiConnection(lambda _, raw: None, lambda peer: True, header_timeout=5.0, deadlines=deadlines)
        conn.connection_made(Transport())
        conn.data_received(ENV)
        connections.append(conn)
    return connections


async def test_connections_share_one_timer_per_tick_and_each_keeps_its_own_deadline() -> None:
    """Deadlines: a hundred connections waiting in one tick cost one loop timer. A deadline that
    moved on (a later command) is followed to its own tick; a sooner one is moved forward."""
    from ivr.agi.connection import DEADLINE_TICK

    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    connections = sharing(deadlines, 100)
    assert len(deadlines._timers) <= 2  # the header deadlines: all in one tick (two if it turned meanwhile)

    quick, slow, moved = connections[:3]
    slow_line = slow.readline(0.6)
    moved_line = moved.readline(5.0)  # joins the header deadline's tick, 5 s away ...
    moved.data_received(b"200 result=0\n")
    assert await moved_line == b"200 result=0\n"
    moved_line = moved.readline(0.05)  # ... and a sooner deadline moves it forward
    started = loop.time()
    with pytest.raises(TimeoutError):
        await quick.readline(0.05)
    with pytest.raises(TimeoutError):
        await moved_line
    assert loop.time() - started < 0.05 + 3 * DEADLINE_TICK
    assert not slow_line.done()  # its own, later deadline
    with pytest.raises(TimeoutError):
        await slow_line
    assert loop.time() - started >= 0.6
    deadlines.close()
    assert not deadlines._timers


async def test_an_environment_that_never_ends_closes_the_connection_at_its_deadline() -> None:
    conn = AgiConnection(lambda _, raw: None, lambda peer: True, header_timeout=0.1)
    transport = Transport()
    conn.connection_made(transport)
    conn.data_received(b"agi_network_script: hotline\n")  # and nothing more
    await asyncio.sleep(0.05)
    assert not transport.closed
    await asyncio.sleep(0.3)
    assert transport.closed


async def test_a_split_environment_near_its_deadline_still_gets_its_grace() -> None:
    """A blank line inside a caller name ends a block early; the grace that waits for the rest
    is not cut short by the header deadline running out meanwhile."""
    environments: list[bytes] = []
    conn = AgiConnection(lambda _, raw: environments.append(raw), lambda peer: True, header_timeout=0.3)
    transport = Transport()
    conn.connection_made(transport)
    await asyncio.sleep(0.28)
    conn.data_received(b"agi_network_script: hotline\nagi_calleridname: A\n\n")  # no agi_threadid yet
    await asyncio.sleep(0.3)
    assert not transport.closed
    assert environments == [b"agi_network_script: hotline\nagi_calleridname: A\n\n"]


async def test_closed_deadlines_leave_no_connection_waiting_in_a_tick_and_one_failure_spares_the_rest() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    conns = sharing(deadlines, 3)
    waiting = conns[0].readline(5.0)
    deadlines.close()
    assert all(conn._tick == 0 for conn in conns) and not deadlines._timers
    waiting.cancel()

    class Unclosable(Transport):
        def close(self) -> None:
            raise RuntimeError("broken transport")

    # Two connections whose environments never come, their deadlines in one tick: the first one
    # checked fails to close, and the other is closed all the same.
    deadlines = Deadlines(loop)
    transports = [Unclosable(), Transport(), Unclosable()]
    for transport in transports:
        AgiConnection(lambda _, raw: None, lambda peer: True, header_timeout=0.05,
                      deadlines=deadlines).connection_made(transport)
    await asyncio.sleep(0.3)
    assert transports[1].closed
    deadlines.close()
