"""The hangup handler's own journal (calls no controller recorded) turned into outcome records,
against a real Redis. Lines are written the way Asterisk's FILE() and CSV_QUOTE() write them."""

import re
import time
from pathlib import Path

from redis.asyncio import Redis

from ivr import variables as v
from ivr.calls import CallStates
from ivr.menu.engine import CallContext
from ivr.outcomes import STREAM_KEY, Disposition, OutcomeRecord, OutcomeStore
from ivr.reconcile import UNFINISHED_COLUMNS, UnfinishedCalls
from routing.customers import CustomerClass

EXTENSIONS = Path(__file__).resolve().parents[2] / "asterisk" / "conf" / "extensions.conf"


def csv_quote(value: str) -> str:
    """What Asterisk's CSV_QUOTE() makes of a value."""
    return '"' + value.replace('"', '""') + '"'


def journal_line(uniqueid: str, caller: str, ended: float, **variables: str) -> str:
    values = {"UNIQUEID": uniqueid, "CALLERID(num)": caller, "EPOCH": f"{ended:.0f}", **variables}
    return ",".join(csv_quote(values.get(name, "")) for name in UNFINISHED_COLUMNS) + "\n"


def test_the_dialplan_writes_the_columns_the_controller_reads() -> None:
    text = EXTENSIONS.read_text()
    line = next(x for x in text.splitlines() if "hotline-unfinished.csv" in x and "Set(FILE(" in x)
    written = re.findall(r"\$\{CSV_QUOTE\(\$\{(.+?)\}\)\}", line)
    assert tuple(written) == UNFINISHED_COLUMNS
    assert f'GotoIf($["${{{v.RECORDED}}}" = "1"]?done)' in text  # only calls finish did not record


async def test_each_journaled_call_gets_one_record_with_the_ivr_state(redis: Redis, tmp_path: Path) -> None:
    await redis.flushdb()
    store = OutcomeStore(redis, tmp_path / "outcomes.journal")
    states = CallStates(redis)
    in_menu = CallContext("u.menu", "13800000001", "Kim", CustomerClass.KEY, "zh", path=["main", "billing"])
    states.add(in_menu)
    await states.checkpoint(in_menu)
    await store.save(OutcomeRecord("u.done", Disposition.ANSWERED, "13800000003"))  # finish did write this one
    now = float(int(time.time()))  # EPOCH is whole seconds
    journal = tmp_path / "log" / "hotline-unfinished.csv"
    journal.parent.mkdir()
    journal.write_text(
        # Hung up in the dialplan's fallback queue while no controller was up.
        journal_line("u.menu", "13800000001", now - 5, HOTLINE_FALLBACK="FAILURE", HOTLINE_QUEUED_AT=f"{now - 20:.3f}",
                     HOTLINE_IN_QUEUE="general", QUEUENAME="general", ABANDONED="TRUE", QUEUESTATUS="")
        # A hostile caller ID: quotes, a comma and a line break stay inside their column.
        + journal_line("u.odd", '1"3,8\n00', now - 4, HOTLINE_FALLBACK="FAILURE")
        + journal_line("u.done", "13800000003", now - 3)
        + '"too","few","columns"\n'
    )
    unfinished = UnfinishedCalls(journal, store, CallStates(redis), lambda: "sample", lambda: "general")
    assert await unfinished.take(settle=0) == 2
    assert not journal.exists() and not journal.with_name(journal.name + ".taking").exists()

    menu = await store.get("u.menu")
    assert menu is not None and menu.source == "dialplan"
    assert menu.disposition == Disposition.FALLBACK and menu.fallback_reason == "dialplan:FAILURE"
    assert menu.customer_class == "key" and menu.menu_path == ["main", "billing"]  # the IVR's state from Redis
    assert menu.queue == "general" and menu.wait_seconds == 15.0 and menu.abandon_point is not None
    odd = await store.get("u.odd")
    assert odd is not None and odd.source == "dialplan" and odd.disposition == Disposition.FALLBACK
    done = await store.get("u.done")
    assert done is not None and done.source == "finish"  # untouched

    # Lines Asterisk adds later are taken in the next round; a line seen again adds nothing.
    journal.write_text(journal_line("u.menu", "13800000001", now) + journal_line("u.late", "13800000004", now))
    assert await unfinished.take(settle=0) == 1
    assert [f[b"uniqueid"] for _, f in await redis.xrange(STREAM_KEY)].count(b"u.menu") == 1
    assert await unfinished.take(settle=0) == 0  # nothing there


async def test_redis_away_keeps_the_journal_for_the_next_round(redis_server: object, tmp_path: Path) -> None:
    from tests.conftest import free_port

    journal = tmp_path / "hotline-unfinished.csv"
    journal.write_text(journal_line("u.wait", "13800000005", time.time(), HOTLINE_FALLBACK="FAILURE"))
    away = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    try:
        unfinished = UnfinishedCalls(journal, OutcomeStore(away, tmp_path / "j"), CallStates(away),
                                     lambda: "sample", lambda: "general")
        try:
            await unfinished.take(settle=0)
            raise AssertionError("Redis was away")
        except OSError:
            pass
        except Exception as exc:  # redis' ConnectionError
            assert "connect" in str(exc).lower(), exc
        assert journal.with_name(journal.name + ".taking").exists()  # kept, taken again next round
    finally:
        await away.aclose()
