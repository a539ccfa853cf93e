"""Call outcome records: exactly one per call, keyed by Asterisk's uniqueid.

Stored in Redis as a per-call key plus an entry in a stream (the feed `hotline calls` and later
reports read). Saving is idempotent: a Lua script writes the key only if absent and appends to
the stream only then, so a retried or replayed save never yields a second record. When Redis is
unreachable the record goes to a local journal file and is replayed when Redis is back.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RECORD_KEY = "hotline:outcome:{uniqueid}"
STREAM_KEY = "hotline:outcomes"
STREAM_MAXLEN = 100_000
REMEMBERED_RECORDS = 20_000  # the watchdog asks within a minute or so of a hangup
RECORD_TTL_SECONDS = 90 * 24 * 3600  # retention: records expire after 90 days

# KEYS[1] record key, KEYS[2] stream; ARGV[1] json, ARGV[2] uniqueid, ARGV[3] ttl, ARGV[4] maxlen
_SAVE_ONCE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'uniqueid', ARGV[2], 'record', ARGV[1])
  return 1
end
return 0
"""


class Disposition(StrEnum):
    SELF_SERVED = "self_served"
    ANSWERED = "answered"
    ABANDONED_IVR = "abandoned_ivr"
    ABANDONED_QUEUE = "abandoned_queue"
    FALLBACK = "fallback"
    FAILED = "failed"
    CALLBACK_BOOKED = "callback_booked"  # the caller left the queue; a callback holds their place


@dataclass
class OutcomeRecord:
    uniqueid: str
    disposition: Disposition
    caller: str
    caller_name: str = ""
    customer_class: str = "public"
    language: str = ""
    menu: str = ""
    menu_path: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    skill: str | None = None
    queue: str | None = None
    priority: int | None = None
    agent: str | None = None
    wait_seconds: float | None = None
    talk_seconds: float | None = None
    fallback_reason: str | None = None
    overflow: str | None = None  # why the dialplan moved the caller on to the overflow queue
    queues: list[str] = field(default_factory=list)  # every queue the caller waited in, in order
    escalation: list[str] = field(default_factory=list)  # why the priority was raised (repeat, urgent)
    survey_score: int | None = None  # 1-5, given after the agent hung up
    queue_status: str | None = None
    kind: str = "inbound"  # or "callback": the outbound leg of a virtual-hold callback
    source: str = "finish"  # "ami": written by the reconciliation because the hangup handler never came
    announcements: list[str] = field(default_factory=list)  # what the caller was told while queued
    callback: dict[str, Any] | None = None  # id, attempt, result; "of": the call that booked it
    abandon_point: dict[str, Any] | None = None  # where the caller gave up: IVR node, or queue+position
    tickets: list[str] = field(default_factory=list)  # work orders opened in the call
    revisit: dict[str, Any] | None = None  # a return visit's leg: ticket, attempt, result, resolved, score
    started_at: float | None = None
    queued_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["disposition"] = self.disposition.value
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> OutcomeRecord:
        data: dict[str, Any] = json.loads(text)
        data["disposition"] = Disposition(data["disposition"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class OutcomeStore:
    def __init__(self, redis: Redis, journal: Path, *, timeout: float = 1.0) -> None:
        self._redis = redis
        self._journal = journal
        self._timeout = timeout
        self._script = redis.register_script(_SAVE_ONCE)
        self._journal_lock = asyncio.Lock()
        # Calls whose record this process stored (in Redis or the journal), newest last: exists()
        # answers for them without asking Redis (the watchdog asks it of every call).
        self._stored: dict[str, None] = {}

    def _remember(self, uniqueid: str) -> None:
        self._stored[uniqueid] = None
        if len(self._stored) > REMEMBERED_RECORDS:
            for old in list(itertools.islice(self._stored, REMEMBERED_RECORDS // 4)):
                del self._stored[old]

    async def _save_redis(self, record: OutcomeRecord) -> bool:
        async with asyncio.timeout(self._timeout):
            created = await self._script(
                keys=[RECORD_KEY.format(uniqueid=record.uniqueid), STREAM_KEY],
                args=[record.to_json(), record.uniqueid, RECORD_TTL_SECONDS, STREAM_MAXLEN],
            )
        return bool(created)

    async def save(self, record: OutcomeRecord) -> bool:
        """Store the record; True if this call had none yet. Never raises for Redis trouble."""
        try:
            created = await self._save_redis(record)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("outcome %s journaled locally: Redis unavailable (%s)", record.uniqueid, exc)
            async with self._journal_lock:
                await asyncio.to_thread(self._append_journal, record.to_json())
            created = True
        self._remember(record.uniqueid)
        return created

    def _append_journal(self, line: str) -> None:
        self._journal.parent.mkdir(parents=True, exist_ok=True)
        with self._journal.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    async def replay_journal(self) -> int:
        """Move journaled records into Redis; returns how many were replayed."""
        async with self._journal_lock:
            if not self._journal.exists():
                return 0
            lines = (await asyncio.to_thread(self._journal.read_text, encoding="utf-8")).splitlines()
            replayed = 0
            for index, line in enumerate(lines):
                if not line.strip():
                    continue
                try:
                    await self._save_redis(OutcomeRecord.from_json(line))
                except (TimeoutError, RedisError, OSError):
                    # Keep what is left for the next attempt.
                    await asyncio.to_thread(self._journal.write_text, "\n".join(lines[index:]) + "\n", "utf-8")
                    return replayed
                except (ValueError, KeyError, TypeError):
                    log.error("dropping unreadable journal line: %.80s", line)
                replayed += 1
            await asyncio.to_thread(self._journal.unlink)
            return replayed

    async def run_journal_replayer(self, interval: float = 5.0) -> None:
        """Background task (owned by the app): replay the journal whenever Redis is back."""
        while True:
            try:
                count = await self.replay_journal()
                if count:
                    log.info("replayed %d journaled outcome(s) into Redis", count)
            except Exception:
                log.exception("journal replay failed")
            await asyncio.sleep(interval)

    async def exists(self, uniqueid: str) -> bool:
        """Whether the call has a record: one this process stored (a journaled one counts: it goes
        to Redis with the journal's replay), or one in Redis."""
        if uniqueid in self._stored:
            return True
        return bool(await self._redis.exists(RECORD_KEY.format(uniqueid=uniqueid)))

    async def get(self, uniqueid: str) -> OutcomeRecord | None:
        raw = await self._redis.get(RECORD_KEY.format(uniqueid=uniqueid))
        return OutcomeRecord.from_json(raw) if raw else None

    async def recent(self, count: int = 20) -> list[OutcomeRecord]:
        entries = await self._redis.xrevrange(STREAM_KEY, count=count) or []
        return [OutcomeRecord.from_json(fields[b"record"]) for _, fields in entries if fields]
