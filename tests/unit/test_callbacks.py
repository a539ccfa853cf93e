"""Callback bookkeeping against a real Redis; Asterisk's side is a stub that answers like AMI."""

from pathlib import Path
from typing import Any

from panoramisk.message import Message
from redis.asyncio import Redis

from ivr.outcomes import OutcomeStore
from routing.ami import AmiError, OriginateResult
from routing.callbacks import NUMBER_KEY, Booking, Callback, Callbacks, CallbackStatus
from routing.rules import parse_rules_text

RULES = parse_rules_text("""\
name: cb
skills:
  general: {queue: q-general, callback: true}
fallback_skill: general
callbacks: {dial: "PJSIP/{number}@trunk", retries: 1, retry_after: 5, max_hold_hours: 1}
""")


class StubAmi:
    """Records Originates; QueueStatus lists the hold halves we say are queued."""

    ready = True

    def __init__(self) -> None:
        self.originated: list[dict[str, Any]] = []
        self.queued: set[str] = set()
        self.fail_with: Exception | None = None
        self.handlers: dict[str, Any] = {}

    def on(self, event: str, handler: Any) -> None:
        self.handlers[event] = handler

    async def originate(self, channel: str, **kw: Any) -> OriginateResult:
        self.originated.append({"channel": channel, **kw})
        if self.fail_with is not None:
            raise self.fail_with
        return OriginateResult(True, "queued", kw["channel_id"])

    async def action(self, action: dict[str, Any], **_: Any) -> list[Message]:
        assert action["Action"] == "QueueStatus"
        return [Message({"Event": "QueueEntry", "Queue": "q-general", "Uniqueid": u}) for u in self.queued]


def request(callback_id: str, number: str = "13800000001") -> Callback:
    return Callback(id=callback_id, number=number, queue="q-general", skill="general", customer_class="public",
                    base_priority=1, priority=3, queued_at=1000.0, position=2, language="zh",
                    origin_uniqueid=f"call-{callback_id}", booked_at=1010.0)


def callbacks(redis: Redis, ami: StubAmi, tmp_path: Path, now: list[float]) -> tuple[Callbacks, OutcomeStore]:
    outcomes = OutcomeStore(redis, tmp_path / "journal")
    return Callbacks(ami, redis, lambda: RULES, outcomes=outcomes, clock=lambda: now[0]), outcomes  # type: ignore[arg-type]


async def test_one_callback_per_number_while_it_is_really_pending(redis: Redis, tmp_path: Path) -> None:
    ami, now = StubAmi(), [1010.0]
    service, outcomes = callbacks(redis, ami, tmp_path, now)
    assert await service.book(request("aaa")) == (Booking.BOOKED, "aaa")
    placed = ami.originated[0]
    assert placed["channel"] == "Local/aaa@hotline-callback-hold" and placed["wait"] is False
    assert placed["variables"]["__CB_DIAL"] == "PJSIP/13800000001@trunk"
    assert placed["variables"]["__CB_POSITION"] == "2" and placed["variables"]["__CB_PRIO"] == "3"
    ami.queued.add("cb-aaa-1-hold")
    assert await service.book(request("bbb")) == (Booking.EXISTS, "aaa")  # still waiting in its queue
    assert len(ami.originated) == 1

    ami.queued.clear()  # its hold half is gone (Asterisk restarted): the number is not kept blocked
    assert await service.book(request("ccc")) == (Booking.BOOKED, "ccc")
    lost = await service.get("aaa")
    assert lost is not None and lost.status is CallbackStatus.FAILED and lost.results == ["lost"]
    record = await outcomes.get("cb-aaa-1")  # the lost one still has its outcome
    assert record is not None and record.kind == "callback" and record.callback["result"] == "lost"


async def test_an_originate_without_answer_is_looked_for_before_it_is_called_failed(
    redis: Redis, tmp_path: Path
) -> None:
    ami, now = StubAmi(), [1010.0]
    service, _ = callbacks(redis, ami, tmp_path, now)
    ami.fail_with = TimeoutError()
    ami.queued.add("cb-ddd-1-hold")  # it did reach the queue
    assert await service.book(request("ddd", "13800000002")) == (Booking.BOOKED, "ddd")
    ami.queued.clear()
    ami.fail_with = AmiError("connection lost")
    assert await service.book(request("eee", "13800000003")) == (Booking.UNAVAILABLE, "")
    assert await redis.get(NUMBER_KEY.format(number="13800000003")) is None  # the number is free again


async def test_no_answer_is_retried_and_a_hold_past_its_time_given_up(redis: Redis, tmp_path: Path) -> None:
    ami, now = StubAmi(), [1010.0]
    service, _ = callbacks(redis, ami, tmp_path, now)
    await service.book(request("fff", "13800000004"))
    retried = await service.attempt_ended("fff", "NOANSWER", "agent1", 1200.0)
    assert retried is not None and retried.status is CallbackStatus.RETRY and retried.position == 1
    assert await redis.zscore("hotline:callback-retries", "fff") == 1015.0  # retry_after 5 s
    assert await service.place_due() == 0  # not yet
    now[0] = 1016.0
    assert await service.place_due() == 1 and ami.originated[-1]["variables"]["__CB_POSITION"] == "1"
    final = await service.attempt_ended("fff", "BUSY", "agent1", 1300.0)
    assert final is not None and final.status is CallbackStatus.FAILED and final.results == ["NOANSWER", "BUSY"]

    await service.book(request("ggg", "13800000005"))
    now[0] = 1010.0 + 3600  # max_hold_hours: 1
    await ami.handlers["OriginateResponse"](Message({"Event": "OriginateResponse", "Response": "Failure",
                                                    "ActionID": "callback-ggg-1"}))
    expired = await service.get("ggg")
    assert expired is not None and expired.status is CallbackStatus.FAILED and expired.results == ["expired"]
