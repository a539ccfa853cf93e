"""Data retention: callers' kept recordings (answers a node keeps, ticket descriptions) expire.

Outcome records expire in Redis by their own TTL (ivr/outcomes.py); recordings are files, so a
background task of the server removes the ones older than ``recordings_keep_days``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".sln", ".wav", ".gsm", ".ulaw", ".alaw")


def expire_recordings(folder: Path, keep_seconds: float, *, now: float | None = None) -> int:
    """Delete recordings under ``folder`` last written more than ``keep_seconds`` ago; returns how many."""
    cutoff = (time.time() if now is None else now) - keep_seconds
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.rglob("*"):
        try:
            if path.suffix in AUDIO_SUFFIXES and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue  # gone meanwhile (deleted after recognition)
    return removed


async def run_recording_expiry(folder: Path, keep_days: float, interval: float = 3600.0) -> None:
    """Background task (owned by the app): hourly, and once at start."""
    while True:
        try:
            removed = await asyncio.to_thread(expire_recordings, folder, keep_days * 86400)
            if removed:
                log.info("recordings: %d older than %g days deleted", removed, keep_days)
        except OSError as exc:
            log.warning("recordings expiry failed: %s", exc)
        await asyncio.sleep(interval)
