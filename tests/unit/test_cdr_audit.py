"""The CDR reconciliation against a real Redis: a call Asterisk recorded needs exactly one outcome."""

import asyncio
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
    now = time.time()
    report = await audit(read_cdr(cdr_line("old.1", "hotline-inbound", now - 100)), redis, now=now)
    assert report.checked == 1 and report.mismatches == 0
    # Older than the records' retention: its record expired, so it is not judged at all.
    report = await audit(read_cdr(cdr_line("ancient.1", "hotline-inbound", now - 100 * 86400)), redis, now=now)
    assert report.checked == 0 and report.mismatches == 0


async def test_a_call_is_judged_at_its_last_cdr_and_every_stream_page_counts(redis: Redis, tmp_path: Path) -> None:
    await redis.flushdb()
    now = time.time()
    # A long call: its first CDR row ended long ago, its last one just now (the record is coming).
    rows = read_cdr(cdr_line("long.1", "hotline-inbound", now - 300) + cdr_line("long.1", "hotline-inbound", now - 1))
    report = await audit(rows, redis, now=now, settle=30)
    assert report.settling == 1 and report.mismatches == 0
    # More records than one page of the stream, the last one a duplicate: found across pages.
    pipe = redis.pipeline()
    for i in range(5003):
        pipe.xadd(STREAM_KEY, {"uniqueid": f"c.{i}", "record": "{}"})
    pipe.xadd(STREAM_KEY, {"uniqueid": "c.5000", "record": "{}"})
    await pipe.execute()
    text = "".join(cdr_line(f"c.{i}", "hotline-inbound", now - 100) for i in (0, 4999, 5000, 5001, 5002))
    report = await audit(read_cdr(text), redis, now=now)
    assert report.checked == 5 and report.missing == [] and report.duplicated == {"c.5000": 2}


async def test_a_save_that_timed_out_but_ran_is_not_recorded_twice_by_the_replay(redis: Redis, tmp_path: Path,
                                                                                 redis_server: object) -> None:
    """Redis paused: the save gives up after its deadline and journals the record, but Redis runs the
    queued write once it resumes. The replay then finds the record and adds no second one."""
    await redis.flushdb()
    url = redis_server.url  # type: ignore[attr-defined]
    writer, admin = Redis.from_url(url), Redis.from_url(url)
    store = OutcomeStore(writer, tmp_path / "journal", timeout=0.5)
    try:
        await admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        assert await store.save(OutcomeRecord("paused.1", Disposition.ANSWERED, "100"))  # journaled
        assert "paused.1" in (tmp_path / "journal").read_text()
        await asyncio.sleep(1.6)
        for _ in range(20):  # the queued write ran once Redis resumed, or the replay writes it now
            await store.replay_journal()
            if not (tmp_path / "journal").exists():
                break
            await asyncio.sleep(0.2)
        entries = await redis.xrange(STREAM_KEY, "-", "+")
        assert [f[b"uniqueid"] for _, f in entries] == [b"paused.1"]
    finally:
        await writer.aclose()
        await admin.aclose()
