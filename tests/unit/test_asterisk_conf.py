"""The AMI user's eventfilter (asterisk/conf/manager.conf) against the events the code listens to:
an event left out of the filter would never reach its handler, and nothing else would say so."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def filtered_in() -> set[str]:
    text = (ROOT / "asterisk/conf/manager.conf").read_text()
    return set(re.findall(r"^eventfilter\(action\(include\),name\((\w+)\)\)\s*=\s*$", text, re.MULTILINE))


def listened_to() -> set[str]:
    """Asterisk's events a handler is registered for, in the code, the tests and the benchmarks
    (ours, like HotlineLiveResync, are injected and never filtered)."""
    names = set()
    for folder in ("ivr", "routing", "tests/e2e", "bench"):
        for source in ROOT.joinpath(folder).rglob("*.py"):
            names.update(re.findall(r"""\bami\.on\(\s*["']([A-Z]\w+)["']""", source.read_text()))
    return {name for name in names if not name.startswith("Hotline")}


def test_every_event_a_handler_listens_to_passes_the_filter() -> None:
    listened = listened_to()
    assert {"QueueCallerJoin", "AgentConnect", "Hangup", "OriginateResponse"} <= listened  # the scan works
    # routing/ami.py reads FullyBooted and OriginateResponse itself (by comparing the name).
    missing = (listened | {"FullyBooted", "OriginateResponse"}) - filtered_in()
    assert not missing, f"add to manager.conf's eventfilter: {sorted(missing)}"


def test_the_filter_is_include_only() -> None:
    # With include filters only, an event passes if it matches any of them; one exclude filter
    # would change that for all (manager.conf.sample, "Event Filter Processing Ordering").
    text = (ROOT / "asterisk/conf/manager.conf").read_text()
    filters = re.findall(r"^eventfilter.*$", text, re.MULTILINE)
    assert len(filters) == len(filtered_in()) > 10
