"""Reconciliation against Asterisk's own books: every call Asterisk recorded (its CDRs) that went
through the hotline must have exactly one outcome record. ``hotline reconcile`` runs it.

The CDRs are written by Asterisk itself (cdr_custom, ``log/cdr-custom/hotline.csv``), not by the
controller, so a call the controller never heard of still shows up. Asterisk writes a CDR when
the call is over; one that ended less than ``settle`` seconds ago is not judged yet (its record
may be being written).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from ivr.outcomes import RECORD_KEY, RECORD_TTL_SECONDS, STREAM_KEY

# Where a call that must have a record is when Asterisk closes its CDR: inbound calls (and their
# hangup handler), return visits and callbacks' customer legs. Hold halves and test channels are not calls.
RECORDED_CONTEXTS = {"hotline-inbound", "hotline-finish", "hotline-queue-keys", "hotline-revisit",
                     "hotline-callback-dial", "hotline-callback-done"}


@dataclass(frozen=True)
class CdrRow:
    uniqueid: str
    context: str
    channel: str
    disposition: str
    ended: float  # epoch seconds


@dataclass
class AuditReport:
    checked: int = 0
    settling: int = 0
    missing: list[CdrRow] = field(default_factory=list)  # no outcome record
    duplicated: dict[str, int] = field(default_factory=dict)  # uniqueid -> records

    @property
    def mismatches(self) -> int:
        return len(self.missing) + len(self.duplicated)


def read_cdr(text: str) -> list[CdrRow]:
    rows = []
    for fields in csv.reader(io.StringIO(text)):
        if len(fields) >= 5 and fields[0]:
            try:
                ended = float(fields[4])
            except ValueError:
                ended = 0.0
            rows.append(CdrRow(fields[0], fields[1], fields[2], fields[3], ended))
    return rows


async def outcome_counts(redis: Redis) -> Counter[str]:
    """Records per uniqueid in the outcome stream (the store appends once per record)."""
    counts: Counter[str] = Counter()
    last = "-"
    while True:
        # After the first page, start just past the last entry seen ("(" = exclusive).
        start = last if last == "-" else f"({last}"
        entries = list(await redis.xrange(STREAM_KEY, min=start, max="+", count=5000) or [])
        if not entries:
            return counts
        for _, fields in entries:
            raw = (fields or {}).get(b"uniqueid", b"")
            counts[raw.decode() if isinstance(raw, bytes) else str(raw)] += 1
        entry_id = entries[-1][0]
        last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def audit(rows: list[CdrRow], redis: Redis, *, now: float, settle: float = 30.0) -> AuditReport:
    """Compare CDR rows with the outcome records: zero or more than one record is a mismatch.
    Calls older than the records' retention are not judged (their records have expired)."""
    counts = await outcome_counts(redis)
    report = AuditReport()
    calls: dict[str, CdrRow] = {}
    for row in rows:  # CDRs split one call into several rows: one judgement, at its latest end
        if row.context in RECORDED_CONTEXTS and (row.uniqueid not in calls or row.ended > calls[row.uniqueid].ended):
            calls[row.uniqueid] = row
    for row in calls.values():
        if row.ended and row.ended < now - RECORD_TTL_SECONDS:
            continue
        count = counts.get(row.uniqueid, 0)
        if count == 0 and await redis.exists(RECORD_KEY.format(uniqueid=row.uniqueid)):
            count = 1  # its stream entry was trimmed away (MAXLEN); the record itself is there
        if count == 0 and row.ended > now - settle:
            report.settling += 1
            continue
        report.checked += 1
        if count == 0:
            report.missing.append(row)
        elif count > 1:
            report.duplicated[row.uniqueid] = count
    return report


def cdr_file(instance_dir_on_host: Path) -> Path:
    return instance_dir_on_host / "log" / "cdr-custom" / "hotline.csv"
