"""Who is calling: customer lookup by caller number, in Redis.

A hotline must never keep a caller waiting for its own database: a lookup that fails or takes
longer than its deadline answers "public" and the call goes on.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from ivr.menu.schema import CustomerClass

log = logging.getLogger(__name__)

CUSTOMER_KEY = "hotline:customer:{number}"
EXTRA = "extra:"  # prefix of free fields in a customer's hash
CSV_COLUMNS = ("number", "name", "class", "account", "language", "urgent")


def normalize_number(raw: str) -> str:
    """Digits only (a leading + kept): caller IDs arrive as free text from the network."""
    raw = raw.strip()
    digits = re.sub(r"[^0-9]", "", raw)[:32]
    return ("+" + digits) if raw.startswith("+") and digits else digits


def mask_number(number: str) -> str:
    """For logs: enough to correlate, not enough to identify. A caller's CR/LF or control bytes
    become "?" so they cannot forge log lines."""
    shown = "".join(c if c.isprintable() else "?" for c in number[-4:])
    return shown if len(number) <= 4 else "*" * min(len(number) - 4, 16) + shown


@dataclass(frozen=True)
class Customer:
    number: str
    customer_class: CustomerClass = CustomerClass.PUBLIC
    name: str = ""
    account: str = ""
    language: str | None = None
    known: bool = False
    urgent: bool = False  # e.g. service to be restored after payment: escalates priority
    extra: dict[str, str] = field(default_factory=dict)  # the operator's own fields, kept as given


class CustomerDirectory:
    def __init__(self, redis: Redis, *, timeout: float = 1.0) -> None:
        self._redis = redis
        self._timeout = timeout

    async def lookup(self, number: str) -> Customer:
        if not number:
            return Customer(number)
        try:
            return await self._read(number)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("customer lookup for %s failed (%s); treating as public", mask_number(number), exc)
            return Customer(number)

    async def _read(self, number: str) -> Customer:
        """The customer record; raises on Redis trouble (a lookup degrades, an export must not)."""
        async with asyncio.timeout(self._timeout):
            fields = await self._redis.hgetall(CUSTOMER_KEY.format(number=number))
        if not fields:
            return Customer(number)
        data = {
            k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in fields.items()
        }
        try:
            customer_class = CustomerClass(data.get("class", "public"))
        except ValueError:
            customer_class = CustomerClass.PUBLIC
        return Customer(
            number=number,
            customer_class=customer_class,
            name=data.get("name", ""),
            account=data.get("account", ""),
            language=data.get("language") or None,
            known=True,
            urgent=data.get("urgent", "").lower() in ("1", "true", "yes"),
            extra={k[len(EXTRA) :]: val for k, val in data.items() if k.startswith(EXTRA)},
        )

    async def save(self, customer: Customer) -> None:
        await self.save_many([customer])

    async def save_many(self, customers: Iterable[Customer], batch: int = 500) -> int:
        """Replace these customers' records (pipelined); returns how many were written."""
        written = 0
        pipe = self._redis.pipeline(transaction=False)
        for customer in customers:
            key = CUSTOMER_KEY.format(number=customer.number)
            mapping: dict[FieldT, EncodableT] = {
                "class": customer.customer_class.value, "name": customer.name, "account": customer.account,
                "language": customer.language or "", "urgent": "1" if customer.urgent else "",
            }
            mapping.update({EXTRA + k: v for k, v in customer.extra.items()})
            pipe.delete(key)
            pipe.hset(key, mapping=mapping)
            written += 1
            if written % batch == 0:
                await pipe.execute()
        await pipe.execute()
        return written

    async def all(self) -> list[Customer]:
        numbers = []
        async for key in self._redis.scan_iter(match=CUSTOMER_KEY.format(number="*"), count=1000):
            name = key.decode() if isinstance(key, bytes) else key
            numbers.append(name.rsplit(":", 1)[1])
        return [await self._read(number) for number in sorted(numbers)]


def parse_customers_csv(text: str) -> tuple[list[Customer], list[str]]:
    """Customers from CSV (header: number,name,class,account,language[,urgent][,own columns...]).

    Returns the valid rows and one message per invalid row (``line N: ...``).
    """
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if "number" not in columns:
        return [], ["line 1: the header needs at least a 'number' column"]
    customers, problems, seen = [], [], set()
    for row in reader:
        line = reader.line_num
        values = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        raw_number = values.get("number", "")
        if any(ch in raw_number for ch in ".eE"):
            problems.append(f"line {line}: {raw_number!r} looks like a spreadsheet number, not a phone number "
                            "(format the column as text)")
            continue
        number = normalize_number(raw_number)
        if not number.lstrip("+"):
            problems.append(f"line {line}: not a phone number: {values.get('number', '')!r}")
            continue
        if number in seen:
            problems.append(f"line {line}: {number} appears twice; the first row is kept")
            continue
        try:
            customer_class = CustomerClass(values.get("class", "") or "public")
        except ValueError:
            problems.append(f"line {line}: class must be key, business or public, not {values.get('class')!r}")
            continue
        language = values.get("language") or None
        if language is not None and not language.isalpha():
            problems.append(f"line {line}: not a language code: {language!r}")
            continue
        seen.add(number)
        customers.append(Customer(
            number=number, customer_class=customer_class, name=values.get("name", ""),
            account=values.get("account", ""), language=language, known=True,
            urgent=values.get("urgent", "").lower() in ("1", "true", "yes"),
            extra={k: v for k, v in values.items() if k not in CSV_COLUMNS and k and v},
        ))
    return customers, problems


def customers_to_csv(customers: Iterable[Customer]) -> str:
    rows = list(customers)
    own = sorted({k for c in rows for k in c.extra})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *own])
    for c in rows:
        writer.writerow([c.number, c.name, c.customer_class.value, c.account, c.language or "",
                         "1" if c.urgent else "", *(c.extra.get(k, "") for k in own)])
    return out.getvalue()
