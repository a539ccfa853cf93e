"""The CDR reconciliation against a real Redis: a call Asterisk recorded needs exactly one outcome."""

import time
from pathlib import Path

from redis.asyncio import Redis

from ivr.cdr_audit import audit, read_cdr
from ivr.outcomes import STREAM_KEY, Disposition, OutcomeRecord, OutcomeStore


def cdr_line(uniqueid: str, context: str, ended: float) -> str:
    return f'"{uniqueid}","{context}","Local/s@x-0001;1","ANSWERED","{ended:.6f}"\n'


async def test_zero_or_two_records_are_mismatches_and_just_ended_calls_wait(redis: Redis, tmp_path: Path) -> None:
    await redis.flushdb()
    store = OutcomeStore(redis, tmp_path / "journal")
    now = time.time()
    for uniqueid in ("ok.1", "twice.1", "revisit.1"):
        await store.save(OutcomeRecord(uniqueid, Disposition.SELF_SERVED, "100"))
    await redis.xadd(STREAM_KEY, {"uniqueid": "twice.1", "record": "{}"})  # a second record, however made
    text = "".join([
        cdr_line("ok.1", "hotline-inbound", now - 100),
        cdr_line("ok.1", "hotline-inbound", now - 90),  # CDRs split calls: one judgement per uniqueid
        cdr_line("twice.1", "hotline-inbound", now - 100),
        cdr_line("lost.1", "hotline-finish", now - 100),  # ended in its hangup handler, no record
        cdr_line("revisit.1", "hotline-revisit", now - 100),
        cdr_line("fresh.1", "hotline-inbound", now - 2),  # its record may be being written
        cdr_line("hold.1", "hotline-callback-hold", now - 100),  # a callback's hold half: not a call
        "garbage line without fields\n",
    ])
    report = await audit(read_cdr(text), redis, now=now, settle=30)
    assert report.checked == 4 and report.settling == 1
    assert [row.uniqueid for row in report.missing] == ["lost.1"]
    assert report.duplicated == {"twice.1": 2}
    assert report.mismatches == 2


async def test_a_record_whose_stream_entry_was_trimmed_still_counts(redis: Redis, tmp_path: Path) -> None:
    await redis.flushdb()
    await OutcomeStore(redis, tmp_path / "journal").save(OutcomeRecord("old.1", Disposition.ANSWERED, "100"))
    await redis.delete(STREAM_KEY)
    report = await audit(read_cdr(cdr_line("old.1", "hotline-inbound", 1.0)), redis, now=time.time())
    assert report.checked == 1 and report.mismatches == 0
