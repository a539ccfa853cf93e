"""The recordings disk full, for real: a tiny tmpfs mounted over the hotline's recordings folder
and filled to ENOSPC. Asterisk's writes fail ("Bad write ... No space left on device") while
RECORD FILE answers as if all went well, with the samples it heard; the file stays empty, which
the hotline logs as a failed write. The caller reporting a fault still gets the ticket and its
number (without the description audio), and the outcome is recorded as usual."""

import asyncio
import contextlib
import logging
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivr.app import Hotline
from ivr.outcomes import Disposition
from tests.e2e.conftest import Calls
from tests.e2e.test_tickets import description, ticket_of  # noqa: F401 (description is a fixture)

pytestmark = pytest.mark.e2e


def fill(path: Path) -> None:
    with contextlib.suppress(OSError), path.open("wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()


@pytest.fixture
async def full_disk(hotline: Hotline) -> AsyncIterator[Path]:
    assert hotline.speech is not None
    folder = hotline.speech.recordings.host_dir
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], check=True)
    try:
        (folder / "tickets").mkdir()  # the folder is there; only its disk is full
        await asyncio.to_thread(fill, folder / "filler")
        with pytest.raises(OSError):  # really full
            (folder / "probe").write_bytes(b"\0" * 8192)
        yield folder
    finally:
        await asyncio.sleep(1)  # Asterisk has closed the recording (the call is over)
        subprocess.run(["umount", "-l", str(folder)], check=False)


async def test_a_fault_report_on_a_full_disk_still_opens_the_ticket(
        hotline: Hotline, calls: Calls, description: str, full_disk: Path) -> None:  # noqa: F811
    number = f"139{int(time.time() * 1000) % 10**8:08d}"
    heard: list[str] = []
    listener = logging.Handler(logging.WARNING)
    listener.emit = lambda record: heard.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("ivr.tickets").addHandler(listener)
    uniqueid = await calls.dial(keys="133", gap=1.5, number=number, hold=40,
                                extra={"__CALLER_PLAY": description, "__CALLER_PLAY_AFTER": "4"})
    try:
        record = await calls.outcome(uniqueid, timeout=120)
    finally:
        logging.getLogger("ivr.tickets").removeHandler(listener)
    assert record.disposition is Disposition.SELF_SERVED, (record.menu_path, record.inputs)
    (ticket_number,) = record.tickets
    assert record.inputs["fault_report"] == f"opened:{ticket_number}"
    ticket = await ticket_of(hotline, ticket_number)
    assert ticket.phone == number and ticket.description_audio == ""  # nothing could be kept
    kept = [p for p in (full_disk / "tickets").iterdir() if p.stat().st_size > 0]
    assert kept == []
    # The path taken was Asterisk's failed writes (it heard the caller, the file stayed empty),
    # not a recording never made.
    failed = f"call {uniqueid}: description could not be written (disk full?)"
    assert any(line.startswith(failed) for line in heard), heard
