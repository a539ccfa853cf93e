"""Routing decision benchmark: what the IVR asks Redis before it speaks (customer lookup, the
caller's recent calls, the switches, concurrently as ivr/calls.py does) plus the route decision
for the sample rules, against a real Redis of its own. Beside it, in the same run: one bare Redis
HGETALL round trip, the floor any lookup pays."""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from ivr.config import SAMPLE_ROUTING
from ivr.services import LocalRedis, redis_client
from routing.customers import CUSTOMER_KEY, Customer, CustomerClass, CustomerDirectory
from routing.router import Router
from routing.rules import load_rules

CUSTOMERS = 20_000
DECISIONS = 4_000


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(concurrency: int, one: object, count: int) -> list[float]:
    times: list[float] = []

    async def worker(share: int) -> None:
        for _ in range(share):
            started = time.perf_counter()
            await one()  # type: ignore[operator]
            times.append(time.perf_counter() - started)

    await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))
    return times


async def scenario() -> list[tuple[str, int, list[float]]]:
    from bench.agi_engine import free_port

    folder = Path(tempfile.mkdtemp(prefix="hotline-bench-redis-"))
    server = LocalRedis(free_port(), folder)
    await server.start()
    redis = redis_client(server.url)
    try:
        directory = CustomerDirectory(redis)
        classes = [CustomerClass.KEY, CustomerClass.BUSINESS, CustomerClass.PUBLIC]
        await directory.save_many(Customer(f"139{n:08d}", classes[n % 3], f"C{n}", f"A-{n}", None, True)
                                  for n in range(CUSTOMERS))
        rules = load_rules(SAMPLE_ROUTING)
        router = Router(lambda: rules, redis)

        async def decision() -> None:
            number = f"139{random.randrange(CUSTOMERS * 2):08d}"  # half known, half not
            customer, recent, switches = await asyncio.gather(
                directory.lookup(number), router.record_call(number, f"u{random.random()}"), router.switches())
            router.decide("billing", customer.customer_class, router.escalation(customer, recent), switches)

        async def bare_get() -> None:  # one round trip for the same record the lookup reads
            await redis.hgetall(CUSTOMER_KEY.format(number=f"139{random.randrange(CUSTOMERS):08d}"))

        results = []
        for concurrency in (1, 50):
            await measure(concurrency, decision, 500)  # warm-up
            results.append(("bare Redis HGETALL", concurrency, await measure(concurrency, bare_get, DECISIONS)))
            results.append(("lookup + history + switches + decision", concurrency,
                            await measure(concurrency, decision, DECISIONS)))
        return results
    finally:
        await redis.aclose()
        await server.stop()


def run() -> str:
    results = asyncio.run(scenario())
    lines = [
        "## Routing decision\n",
        f"Against a real Redis of its own with {CUSTOMERS:,} customers; half the callers are unknown. "
        "The decision is what ivr/calls.py does before the first prompt: the customer lookup, the "
        "caller's recent calls and the switches, concurrently, then the route for the sample rules. "
        f"{DECISIONS:,} decisions per row; N is how many run at once.\n",
        "| what | N | p50 ms | p99 ms | per second |",
        "|---|---|---|---|---|",
    ]
    for name, concurrency, times in results:
        rate = len(times) / (sum(times) / concurrency)
        lines.append(f"| {name} | {concurrency} | {statistics.median(times) * 1000:.3f} | "
                     f"{percentile(times, 0.99) * 1000:.3f} | {rate:,.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
