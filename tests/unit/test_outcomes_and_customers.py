"""Outcome records and customer lookup against a real Redis."""

import asyncio
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ivr.calls import build_outcome
from ivr.menu.engine import CallContext
from ivr.menu.schema import CustomerClass
from ivr.outcomes import Disposition, OutcomeRecord, OutcomeStore
from routing.customers import Customer, CustomerDirectory, normalize_number
from routing.live import LeftQueue
from tests.conftest import free_port

FALLBACK_QUEUE = "hotline-fallback"


def record(uniqueid: str = "u1") -> OutcomeRecord:
    return OutcomeRecord(uniqueid=uniqueid, disposition=Disposition.SELF_SERVED, caller="13800000001")


async def test_save_is_idempotent_per_uniqueid(redis: Redis, tmp_path: Path) -> None:
    store = OutcomeStore(redis, tmp_path / "journal")
    assert await store.save(record()) is True
    assert await store.save(record()) is False
    assert [r.uniqueid for r in await store.recent(10)] == ["u1"]
    assert (await store.get("u1")) == record()
    assert await redis.ttl("hotline:outcome:u1") > 0  # records expire (retention)


async def test_outcome_is_journaled_when_redis_is_down_and_replayed_once(redis: Redis, tmp_path: Path) -> None:
    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    journal = tmp_path / "journal"
    assert await OutcomeStore(down, journal).save(record("j1")) is True
    assert await OutcomeStore(down, journal).save(record("j1")) is True  # a retry: journaled twice
    await down.aclose()
    store = OutcomeStore(redis, journal)
    assert await store.replay_journal() == 2
    assert not journal.exists()
    assert [r.uniqueid for r in await store.recent(10)] == ["j1"]  # one record despite two lines


async def test_a_record_this_process_stored_or_journaled_exists_without_asking_redis(tmp_path: Path) -> None:
    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    store = OutcomeStore(down, tmp_path / "journal")
    assert await store.save(record("j2")) is True  # journaled: Redis is down
    # The watchdog must not write a second, poorer record for it before the journal's replay.
    assert await store.exists("j2") is True
    with pytest.raises((RedisError, OSError)):
        await store.exists("other")  # anything else is Redis's to answer
    await down.aclose()


async def test_customer_lookup_and_unknown_number(redis: Redis) -> None:
    directory = CustomerDirectory(redis)
    await directory.save(Customer("13800000009", CustomerClass.KEY, "Acme", "A-1", "en", True))
    found = await directory.lookup("13800000009")
    assert (found.customer_class, found.name, found.language, found.known) == (CustomerClass.KEY, "Acme", "en", True)
    unknown = await directory.lookup("13800000000")
    assert unknown.customer_class is CustomerClass.PUBLIC and not unknown.known


async def test_redis_down_or_stalled_answers_public_within_a_second() -> None:
    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    assert (await CustomerDirectory(down).lookup("138")).customer_class is CustomerClass.PUBLIC
    assert time.monotonic() - started < 1.2
    await down.aclose()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    stalled = Redis.from_url(f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0")
    started = time.monotonic()
    assert (await CustomerDirectory(stalled, timeout=1.0).lookup("138")).customer_class is CustomerClass.PUBLIC
    assert time.monotonic() - started < 1.3
    server.close()
    await stalled.aclose()


def test_caller_numbers_are_normalized() -> None:
    assert normalize_number('+86 "138"\r\n0000') == "+861380000"
    assert normalize_number("<script>") == ""


def ctx(**kw: object) -> CallContext:
    base = CallContext("u", "138", "", CustomerClass.BUSINESS, "zh", started_at=100.0, path=["start", "main"])
    for key, value in kw.items():
        setattr(base, key, value)
    return base


def test_answered_outcome_timings() -> None:
    variables = {"HOTLINE_DONE": "route", "HOTLINE_QUEUED_AT": "110", "QEHOLDTIME": "7", "MEMBERNAME": "agent1",
                 "QUEUENAME": "hotline-general", "HOTLINE_PRIORITY": "5", "HOTLINE_SKILL": "general"}
    out = build_outcome("u", "138", ctx(), "routed", variables, "m", FALLBACK_QUEUE, 130.0)
    assert out.disposition is Disposition.ANSWERED
    assert (out.wait_seconds, out.answered_at, out.talk_seconds) == (7.0, 117.0, 13.0)
    surveyed = build_outcome("u", "138", ctx(), "routed", {**variables, "HOTLINE_QUEUE_LEFT": "125.5"}, "m",
                             FALLBACK_QUEUE, 140.0)
    assert surveyed.talk_seconds == 8.5  # the survey after the agent hung up is not talk time
    assert (out.agent, out.queue, out.priority, out.customer_class) == ("agent1", "hotline-general", 5, "business")


def test_dispositions() -> None:
    def disposition(call, ended, variables):
        return build_outcome("u", "138", call, ended, variables, "m", FALLBACK_QUEUE, 200.0).disposition

    assert disposition(ctx(), "self_served", {"HOTLINE_DONE": "hangup"}) is Disposition.SELF_SERVED
    assert disposition(ctx(), "caller_hangup", {}) is Disposition.ABANDONED_IVR
    assert disposition(ctx(), "routed", {"HOTLINE_DONE": "route", "ABANDONED": "TRUE"}) is Disposition.ABANDONED_QUEUE
    assert disposition(ctx(fallback_reason="invalid_input"), "routed",
                       {"HOTLINE_DONE": "route", "ABANDONED": "TRUE"}) is Disposition.FALLBACK
    assert disposition(None, None, {"HOTLINE_FALLBACK": "FAILURE", "ABANDONED": "TRUE"}) is Disposition.FALLBACK
    assert disposition(None, None, {"HOTLINE_FALLBACK": "FAILURE", "MEMBERNAME": "a"}) is Disposition.FALLBACK
    assert disposition(ctx(), "routed", {"HOTLINE_DONE": "route", "QUEUESTATUS": "UNKNOWN"}) is Disposition.FAILED
    assert disposition(None, None, {}) is Disposition.FAILED


async def test_a_restarted_controller_finishes_a_call_from_redis_without_sensitive_values(redis: Redis) -> None:
    from ivr.calls import CallStates

    before_restart = CallStates(redis)
    call = ctx(variables={"account": "12345678", "topic": "bill"}, inputs={"account": "********"},
               sensitive=["account"])
    before_restart.add(call)
    await before_restart.end_ivr(call, "routed")
    stored = (await redis.get("hotline:call:u")) or b""
    assert b"12345678" not in stored  # a sensitive value never reaches Redis in clear

    after_restart = CallStates(redis)  # a new process knows nothing in memory
    restored, ended = await after_restart.take("u")
    assert restored is not None and ended == "routed"
    assert restored.path == ["start", "main"] and restored.customer_class is CustomerClass.BUSINESS
    assert restored.variables == {"topic": "bill"} and restored.inputs == {"account": "********"}
    assert await redis.exists("hotline:call:u") == 0  # finished calls leave no state behind
    assert await after_restart.take("u") == (None, None)


async def test_menu_steps_reach_redis_together_with_the_next_flush_and_the_ivr_end_at_once(redis: Redis) -> None:
    from ivr.calls import CallStates

    states = CallStates(redis, flush_interval=3600)  # flushed by hand below
    calls = [ctx(uniqueid=f"u{n}") for n in range(3)]
    for call in calls:
        states.add(call)
        states.step(call)
    assert await redis.exists(*[f"hotline:call:{c.uniqueid}" for c in calls]) == 0  # nobody waited for Redis
    calls[0].path = ["start", "main", "billing"]  # moved again before the flush: the newest state goes
    await states.flush()
    assert await redis.exists(*[f"hotline:call:{c.uniqueid}" for c in calls]) == 3
    assert b'"billing"' in ((await redis.get("hotline:call:u0")) or b"")

    states.step(calls[1])
    await states.end_ivr(calls[1], "routed")  # written at once, with the step before it
    assert b'"ivr_ended":"routed"' in ((await redis.get("hotline:call:u1")) or b"")

    states.step(calls[2])
    assert await states.take("u2") == (calls[2], None)
    await states.flush()  # the finished call's last step is not written after its end
    assert await redis.exists("hotline:call:u2") == 0


async def test_the_app_flushes_call_states_in_the_background(redis: Redis) -> None:
    from ivr.calls import CallStates

    states = CallStates(redis, flush_interval=0.05)
    flusher = asyncio.create_task(states.run())
    call = ctx(uniqueid="bg")
    states.add(call)
    states.step(call)
    for _ in range(40):
        if await redis.exists("hotline:call:bg"):
            break
        await asyncio.sleep(0.05)
    flusher.cancel()
    await asyncio.gather(flusher, return_exceptions=True)
    assert await redis.exists("hotline:call:bg") == 1


async def test_a_call_that_ends_while_its_state_is_being_written_leaves_no_key(redis: Redis) -> None:
    from ivr.calls import CallStates

    states = CallStates(redis, timeout=1.0, flush_interval=3600)
    call = ctx(uniqueid="racing")
    states.add(call)
    states.step(call)
    await redis.execute_command("CLIENT", "PAUSE", "150", "WRITE")  # Redis holds the write a moment
    flushing = asyncio.create_task(states.flush())
    await asyncio.sleep(0.03)  # the pipeline is in flight
    assert await states.take("racing") == (call, None)  # the call ends: after that write, not before
    await flushing
    assert await redis.exists("hotline:call:racing") == 0


async def test_states_wait_in_memory_while_redis_is_down_and_go_once_it_is_back(tmp_path: Path) -> None:
    from ivr.calls import CallStates
    from ivr.services import LocalRedis

    port = free_port()
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.2)
    states = CallStates(client, timeout=0.2, pause_after_failure=0.1, flush_interval=3600)
    call = ctx(uniqueid="later")
    states.add(call)
    states.step(call)
    await states.flush()  # refused: kept, and writes pause a moment
    server = LocalRedis(port, tmp_path / "redis")
    await server.start()
    try:
        await asyncio.sleep(0.15)
        await states.flush()  # no new step since: the kept state goes now
        assert await client.exists("hotline:call:later") == 1
    finally:
        await client.aclose()
        await server.stop()


async def test_checkpoints_pause_after_redis_fails_instead_of_slowing_every_step() -> None:
    from ivr.calls import CallStates

    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    states = CallStates(down, timeout=0.2)
    call = ctx()
    states.add(call)
    started = time.monotonic()
    for _ in range(20):
        await states.checkpoint(call)
    assert time.monotonic() - started < 1.0
    await down.aclose()


CSV = """number,name,class,account,language,urgent,region
13800000001,Zhang San,key,A-1,zh,,north
+86 139-0000-0002,Acme Ltd,business,B-2,en,yes,south
13800000003,,public,,,,
abc,Bad Number,public,,,,
13800000004,Wrong Class,vip,,,,
13800000001,Again,public,,,,
1.38E+10,Excel,public,,,,
"""


async def test_customers_csv_round_trip_with_free_fields(redis: Redis) -> None:
    from routing.customers import customers_to_csv, parse_customers_csv

    customers, problems = parse_customers_csv(CSV)
    assert [c.number for c in customers] == ["13800000001", "+8613900000002", "13800000003"]
    assert problems == [
        "line 5: not a phone number: 'abc'",
        "line 6: class must be key, business or public, not 'vip'",
        "line 7: 13800000001 appears twice; the first row is kept",
        "line 8: '1.38E+10' looks like a spreadsheet number, not a phone number (format the column as text)",
    ]
    directory = CustomerDirectory(redis)
    assert await directory.save_many(customers) == 3
    acme = await directory.lookup("+8613900000002")
    assert (acme.name, acme.account, acme.language) == ("Acme Ltd", "B-2", "en")
    assert (acme.customer_class, acme.urgent, acme.extra) == (CustomerClass.BUSINESS, True, {"region": "south"})
    exported = customers_to_csv(await directory.all())
    again, again_problems = parse_customers_csv(exported)
    assert again_problems == []
    assert sorted(again, key=lambda c: c.number) == sorted(
        [await directory.lookup(c.number) for c in customers], key=lambda c: c.number)
    assert exported.splitlines()[0] == "number,name,class,account,language,urgent,region"


class _FirstCommandChannel:
    """Enough of a Channel to time the IVR's start: it hangs up at the first command."""

    def __init__(self) -> None:
        from ivr.agi.protocol import parse_environment

        self.env = parse_environment(b"agi_uniqueid: s1\nagi_callerid: 13800000001\nagi_network_script: hotline\n")
        self.first_command_at: float | None = None

    async def set_variable(self, name: str, value: object) -> None:
        from ivr.agi.channel import ChannelHangup, HangupReason

        self.first_command_at = time.monotonic()
        raise ChannelHangup(HangupReason.CONNECTION_CLOSED)

    async def set_variables(self, values: object) -> None:
        await self.set_variable("", values)


async def test_a_stalled_redis_delays_the_ivr_at_most_about_a_second(tmp_path: Path) -> None:
    from ivr.agi.channel import ChannelHangup
    from ivr.calls import CallHandlers, CallStates
    from ivr.config import SAMPLE_MENU, SAMPLE_ROUTING
    from ivr.menu.engine import MenuEngine
    from ivr.menu.loader import load_menu
    from ivr.prompts import PromptLibrary
    from routing.router import Router
    from routing.rules import load_rules

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    stalled = Redis.from_url(f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0")
    rules, menu, prompts = load_rules(SAMPLE_ROUTING), load_menu(SAMPLE_MENU), PromptLibrary("/p")
    handlers = CallHandlers(
        lambda: menu, lambda m, is_open: MenuEngine(m, prompts, is_open=is_open), CustomerDirectory(stalled),
        Router(lambda: rules, stalled), CallStates(stalled), OutcomeStore(stalled, tmp_path / "j"), prompts,
    )
    channel = _FirstCommandChannel()
    started = time.monotonic()
    with pytest.raises(ChannelHangup):
        await handlers.hotline(channel)  # type: ignore[arg-type]
    assert channel.first_command_at is not None and channel.first_command_at - started < 1.3
    server.close()
    await stalled.aclose()


def test_wait_spans_every_stint_and_the_abandon_point_is_kept() -> None:
    # Queued at 110, announcements between stints, the last stint began at 150 and waited 5 s more.
    variables = {"HOTLINE_DONE": "route", "HOTLINE_QUEUED_AT": "110", "HOTLINE_STINT_AT": "150", "QEHOLDTIME": "5",
                 "MEMBERNAME": "agent1", "HOTLINE_ANNOUNCED": "pos=3,wait=90;pos=1,wait=20"}
    out = build_outcome("u", "138", ctx(), "routed", variables, "m", FALLBACK_QUEUE, 170.0)
    assert (out.answered_at, out.wait_seconds, out.talk_seconds) == (155.0, 45.0, 15.0)
    assert out.announcements == ["pos=3,wait=90", "pos=1,wait=20"]

    gave_up = {"HOTLINE_DONE": "route", "HOTLINE_QUEUED_AT": "110", "QUEUESTATUS": "TIMEOUT",
               "HOTLINE_IN_QUEUE": "hotline-general"}
    left = LeftQueue("hotline-general", 2, True, 139.0)
    out = build_outcome("u", "138", ctx(), "routed", gave_up, "m", FALLBACK_QUEUE, 140.0, left)
    assert out.disposition is Disposition.ABANDONED_QUEUE
    assert out.abandon_point == {"stage": "queue", "queue": "hotline-general", "position": 2, "waited": 30.0}
    in_menu = build_outcome("u", "138", ctx(), "caller_hangup", {}, "m", FALLBACK_QUEUE, 140.0)
    assert in_menu.abandon_point == {"stage": "ivr", "node": "main"}


def test_a_booked_callback_is_its_own_disposition() -> None:
    variables = {"HOTLINE_DONE": "route", "HOTLINE_QUEUED_AT": "110", "HOTLINE_WAIT_NEXT": "callback",
                 "HOTLINE_CALLBACK": "abc123", "QUEUESTATUS": "TIMEOUT"}
    out = build_outcome("u", "138", ctx(), "routed", variables, "m", FALLBACK_QUEUE, 150.0)
    assert out.disposition is Disposition.CALLBACK_BOOKED
    assert out.callback == {"id": "abc123", "result": "booked"} and out.wait_seconds == 40.0
    assert out.abandon_point is None
