"""Run every benchmark scenario and write docs/benchmarks.md (the README's bench command).

Scenarios so far: speech recognition (bench/speech.py). Each reports its figures beside a
reference measured in the same run, since absolute times on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from bench import speech

OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    started = time.monotonic()
    sections = [speech.run(args.rounds)]
    header = (
        "# Benchmarks\n\n"
        f"Written by `make bench` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, "
        f"Python {platform.python_version()}); the run took {time.monotonic() - started:.0f} s. "
        "Figures are from one run on a shared 2-core machine: compare within a table, not across runs.\n\n"
    )
    args.out.write_text(header + "\n".join(sections), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
