"""The ``hotline`` command: thin entry points over the components (logic lives elsewhere)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import uvloop
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ivr.agi.channel import DTMF_DIGITS
from ivr.config import Settings, SettingsProblem, load_settings
from ivr.menu.loader import load_menu
from ivr.menu.schema import CustomerClass
from ivr.outcomes import OutcomeRecord, OutcomeStore
from ivr.prompts import PromptBuildError, build_prompts
from ivr.services import ServiceError, local_ami_secret
from ivr.yamldoc import ConfigError
from routing.ami import AmiClient, AmiError
from routing.customers import (
    Customer,
    CustomerDirectory,
    customers_to_csv,
    normalize_number,
    parse_customers_csv,
)
from routing.render import write_asterisk_config
from routing.router import read_switches, set_switch
from routing.rules import load_rules

log = logging.getLogger("hotline")
T = TypeVar("T")

ENTRY_CONTEXT = "hotline-inbound"
ENTRY_EXTENSION = "10000"
TEST_CALLER = "Local/s@hotline-test-caller"


def _redis_url(settings: Settings) -> str:
    return settings.redis_url or f"redis://127.0.0.1:{settings.redis_port}/0"


# -- serve ------------------------------------------------------------------------------------


def _program() -> str:
    """How the user ran us (e.g. `.venv/bin/hotline`), to print commands they can paste."""
    return os.path.relpath(sys.argv[0]) if os.path.sep in sys.argv[0] else "hotline"


async def _serve(settings: Settings, me: str) -> int:
    from ivr.app import Hotline

    hotline = Hotline(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        from ivr.app import ReloadRefused

        try:
            await hotline.reload()
        except ReloadRefused as exc:
            print(f"reload refused, the running version stays: {exc}", file=sys.stderr, flush=True)
        except ConfigError as exc:
            print(f"reload refused, the running version stays:\n{exc}", file=sys.stderr, flush=True)
        except Exception:
            logging.getLogger("hotline").exception("reload failed; the running version stays")

    def on_hangup_signal() -> None:  # SIGHUP: publish the edited rules and menu
        task = asyncio.create_task(reload(), name="reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hangup_signal)
    try:
        await hotline.start()
        print(
            f"hotline is up. Place a test call: {me} dial --from 13800000000 --keys 1 1 1\n"
            f"Recent calls: {me} calls, or http://{settings.web_host}:{settings.web_port}/ (Ctrl-C stops)",
            flush=True,
        )
        await stop.wait()
        calls = hotline.agi.active_sessions if hotline.agi else 0
        print(f"stopping{f': draining {calls} call(s) in progress' if calls else ''} ...", flush=True)
    except (ServiceError, ConfigError, SettingsProblem) as exc:
        print(f"hotline cannot start: {exc}", file=sys.stderr)
        return 1
    finally:
        await hotline.stop()
    return 0


# -- reload -----------------------------------------------------------------------------------


async def _reload(settings: Settings) -> int:
    """Validate here (file:line:column), then ask the running hotline to publish."""
    if _check([str(settings.menu)], settings.routing) != 0:
        print("nothing published: fix the problems above", file=sys.stderr)
        return 1
    import aiohttp

    from ivr.services import local_admin_token
    from ivr.web import ADMIN_HEADER

    url = f"http://{settings.web_host}:{settings.web_port}/api/reload"
    token = settings.admin_token or local_admin_token(settings.state_dir)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            async with session.post(url, headers={ADMIN_HEADER: token}) as response:
                if response.content_type != "application/json":
                    print(f"the hotline at {url} answered {response.status}: {await response.text()}",
                          file=sys.stderr)
                    return 1
                result = await response.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"no running hotline at {url}: {exc}", file=sys.stderr)
        return 1
    if not result.get("ok"):
        print("reload refused, the running version stays:\n" + "\n".join(result.get("problems", [])), file=sys.stderr)
        return 1
    print(f"published menu {result['menu']} and rules {result['rules']}: {result['memberships_applied']} "
          f"agent membership(s) applied, {result['memberships_removed']} removed")
    return 0


# -- check ------------------------------------------------------------------------------------


def _check(paths: list[str], routing: Path) -> int:
    try:
        rules = load_rules(routing)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    print(f"{routing}: ok ({len(rules.skills)} skills, {len(rules.agents)} agents)")
    status = 0
    for path in paths:
        try:
            menu = load_menu(path, skills=rules.skills)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            status = 1
            continue
        print(
            f"{path}: ok ({len(menu.nodes)} nodes, {len(menu.prompts)} prompts, languages {', '.join(menu.languages)})"
        )
    return status


# -- dial -------------------------------------------------------------------------------------


async def _dial(
    settings: Settings,
    number: str,
    name: str,
    keys: list[str],
    first_key: float,
    gap: float,
    hold: float,
    wait: float,
    as_json: bool,
) -> int:
    key_string = "".join(keys)
    if any(k not in DTMF_DIGITS for k in key_string):
        print(f"--keys takes DTMF keys (0-9 * # A-D), got {key_string!r}", file=sys.stderr)
        return 2
    ami = AmiClient(
        settings.ami_host,
        settings.ami_port,
        settings.ami_user,
        settings.ami_secret or local_ami_secret(settings.state_dir),
        tls=settings.ami_tls_context(),
    )
    redis = Redis.from_url(_redis_url(settings))
    outcomes = OutcomeStore(redis, settings.outcome_journal)
    try:
        await ami.start()
        try:
            await ami.wait_ready(10)
        except TimeoutError:
            print(
                f"cannot reach Asterisk's AMI at {settings.ami_host}:{settings.ami_port}: is `hotline serve` running?",
                file=sys.stderr,
            )
            return 1
        uniqueid = f"dial-{uuid.uuid4().hex[:12]}"
        caller_id = f'"{name}" <{number}>' if name else f"<{number}>"
        result = await ami.originate(
            TEST_CALLER,
            context=ENTRY_CONTEXT,
            exten=ENTRY_EXTENSION,
            caller_id=caller_id,
            variables={
                "__CALLER_KEYS": key_string,
                "__CALLER_WAIT": str(first_key),
                "__CALLER_GAP": str(gap),
                "__CALLER_HOLD": str(hold),
            },
            channel_id=uniqueid,
            other_channel_id=f"{uniqueid}-caller",
        )
        if not result.success:
            print(f"the call could not be placed: {result.reason}", file=sys.stderr)
            return 1
        print(
            f"calling {ENTRY_EXTENSION} from {number} (uniqueid {uniqueid}), "
            f"pressing {' '.join(key_string) or 'nothing'} ...",
            file=sys.stderr,
        )
        deadline = time.monotonic() + wait
        record: OutcomeRecord | None = None
        while time.monotonic() < deadline:
            record = await outcomes.get(uniqueid)
            if record is not None:
                break
            await asyncio.sleep(0.5)
        if record is None:
            print(f"no outcome within {wait:.0f}s (the call may still be waiting in a queue)", file=sys.stderr)
            return 1
        print(record.to_json() if as_json else _describe(record))
        return 0
    except (AmiError, TimeoutError) as exc:
        print(f"AMI error: {exc or 'no answer in time'}", file=sys.stderr)
        return 1
    except RedisError as exc:
        print(f"cannot read the outcome from Redis: {exc}", file=sys.stderr)
        return 1
    finally:
        await ami.close()
        await redis.aclose()


def _describe(record: OutcomeRecord) -> str:
    lines = [
        f"outcome      {record.disposition.value}",
        f"caller       {record.caller} ({record.customer_class}, {record.language})",
        f"menu path    {' > '.join(record.menu_path) or '-'}",
    ]
    if record.inputs:
        lines.append("inputs       " + ", ".join(f"{k}={v}" for k, v in record.inputs.items()))
    if record.queue:
        lines.append(f"queue        {record.queue} (priority {record.priority})")
    if record.agent:
        lines.append(f"agent        {record.agent}, waited {record.wait_seconds}s, talked {record.talk_seconds}s")
    if record.fallback_reason:
        lines.append(f"fallback     {record.fallback_reason}")
    return "\n".join(lines)


# -- calls ------------------------------------------------------------------------------------


async def _calls(settings: Settings, count: int, as_json: bool) -> int:
    redis = Redis.from_url(_redis_url(settings), socket_connect_timeout=2)
    try:
        records = await OutcomeStore(redis, settings.outcome_journal).recent(count)
    except (OSError, RedisError) as exc:
        print(f"cannot read outcomes from Redis: {exc}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    if not as_json and records:
        print(f"{'ended':<19}  {'uniqueid':<28} {'caller':<16} {'class':<9} {'outcome':<16} {'queue':<20} path")
    for record in records:
        if as_json:
            print(record.to_json())
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.ended_at or 0))
            print(
                f"{when}  {record.uniqueid:<28} {record.caller:<16} {record.customer_class:<9} "
                f"{record.disposition.value:<16} {record.queue or '-':<20} {' > '.join(record.menu_path)}"
            )
    return 0


# -- reconcile --------------------------------------------------------------------------------


def _local_cdr_file(settings: Settings) -> Path:
    from ivr.cdr_audit import cdr_file
    from ivr.services import LocalPbx

    pbx = LocalPbx(settings.pbx_name, ami_port=settings.ami_port, ami_user=settings.ami_user, ami_secret="",
                   agi_host=settings.agi_host, agi_port=settings.agi_port, sip_port=settings.sip_port,
                   prompts_dir=None)
    return cdr_file(pbx.host_path(pbx.instance_dir()))


async def _reconcile(settings: Settings, cdr: Path | None, settle: float, as_json: bool) -> int:
    """Asterisk's CDRs against the outcome records: each call exactly one record."""
    import json

    from ivr.cdr_audit import audit, read_cdr

    try:
        path = cdr or _local_cdr_file(settings)
        text = path.read_text(encoding="utf-8", errors="replace")
    except (OSError, ServiceError) as exc:
        print(f"cannot read the CDR file: {exc}", file=sys.stderr)
        return 2
    if not read_cdr(text):  # nothing to compare is not "no mismatches"
        print(f"no CDRs in {path}: is cdr_custom loaded (asterisk/conf/modules.conf)?", file=sys.stderr)
        return 2
    redis = Redis.from_url(_redis_url(settings), socket_connect_timeout=2)
    try:
        report = await audit(read_cdr(text), redis, now=time.time(), settle=settle)
    except (OSError, RedisError) as exc:
        print(f"cannot read outcomes from Redis: {exc}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    if as_json:
        print(json.dumps({"checked": report.checked, "settling": report.settling,
                          "missing": [row.uniqueid for row in report.missing], "duplicated": report.duplicated}))
    else:
        print(f"{report.checked} call(s) checked against {path}: {report.mismatches} mismatch(es)"
              + (f", {report.settling} just ended (not judged yet)" if report.settling else ""))
        for row in report.missing:
            print(f"  no outcome   {row.uniqueid}  ({row.context}, {row.disposition}, {row.channel})")
        for uniqueid, count in report.duplicated.items():
            print(f"  {count} outcomes  {uniqueid}")
    return 1 if report.mismatches else 0


# -- tickets ----------------------------------------------------------------------------------


async def _tickets(settings: Settings, args: argparse.Namespace) -> int:
    """List, show, progress or close work orders; closing schedules the return visit."""
    import json
    from dataclasses import asdict

    from ivr.selfservice import BackendUnavailable
    from ivr.tickets import TicketProblem, TicketStatus, TicketStore, describe
    from routing.revisits import close_ticket

    try:
        rules = load_rules(settings.routing)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    redis = Redis.from_url(_redis_url(settings), socket_connect_timeout=2)
    store = TicketStore(redis, lambda severity: rules.tickets.deadline_hours[severity],
                        zone=lambda: rules.hours.timezone)
    action = args.tickets_command or "list"
    try:
        if action == "list":
            if args.phone:
                latest = await store.latest_for(normalize_number(args.phone))
                tickets = [latest] if latest else []
            else:
                tickets = await store.recent(args.n)
            for ticket in tickets:
                print(json.dumps(asdict(ticket), ensure_ascii=False) if args.json else describe(ticket, time.time()))
            return 0
        if action == "show":
            found = await store.get(args.number)
            if found is None:
                print(f"no ticket {args.number}", file=sys.stderr)
                return 1
            print(json.dumps(asdict(found), ensure_ascii=False, indent=2))
            return 0
        if action == "close":
            ticket = await close_ticket(store, redis, rules, args.number, args.result, args.note or "")
            visit = (ticket.revisit or {}).get("status", "none")
            print(f"ticket {ticket.number} closed ({ticket.result}); return visit: {visit}")
            return 0
        ticket = await store.set_status(args.number, TicketStatus.IN_PROGRESS, note=args.note or "")
        print(f"ticket {ticket.number} in progress")
        return 0
    except TicketProblem as exc:
        print(f"hotline tickets: {exc}", file=sys.stderr)
        return 2
    except (BackendUnavailable, OSError, RedisError) as exc:
        print(f"cannot reach Redis: {exc}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()


# -- customers --------------------------------------------------------------------------------


async def _customer_add(
    settings: Settings, number: str, customer_class: str, name: str, account: str, language: str | None,
    urgent: bool,
) -> int:
    normalized = normalize_number(number)
    if not normalized.lstrip("+"):
        print(f"not a phone number: {number!r}", file=sys.stderr)
        return 2
    redis = Redis.from_url(_redis_url(settings))
    try:
        customer = Customer(normalized, CustomerClass(customer_class), name, account, language, True, urgent)
        await CustomerDirectory(redis).save(customer)
        print(f"saved {customer.number} as {customer.customer_class.value}")
    finally:
        await redis.aclose()
    return 0


async def _account_set(settings: Settings, args: argparse.Namespace) -> int:
    """The sample account system's data (a real operator plugs its billing system in instead)."""
    from datetime import date

    from ivr.selfservice import RedisAccounts

    def cents(amount: str | None) -> int | None:
        return None if amount is None else round(float(amount) * 100)

    try:
        if args.due is not None:
            date.fromisoformat(args.due)
        facts = {"balance_cents": cents(args.balance), "due_date": args.due, "bill_cents": cents(args.bill),
                 "bill_period": args.period, "package": args.package, "fault_ticket": args.fault_ticket,
                 "fault_status": args.fault_status}
        if args.fault_ticket is not None and not args.fault_ticket.isdigit():
            raise ValueError("a fault ticket number is digits")
        redis = Redis.from_url(_redis_url(settings))
        try:
            await RedisAccounts(redis).save(args.account, pin=args.pin, **facts)
        finally:
            await redis.aclose()
    except ValueError as exc:
        print(f"hotline accounts: {exc}", file=sys.stderr)
        return 2
    print(f"saved account {args.account}" + (" (PIN stored hashed)" if args.pin else ""))
    return 0


async def _with_directory(settings: Settings, work: Callable[[CustomerDirectory], Awaitable[T]]) -> T:
    redis = Redis.from_url(_redis_url(settings))
    try:
        return await work(CustomerDirectory(redis))
    finally:
        await redis.aclose()


async def _switch(settings: Settings, name: str | None, value: str | None) -> int:
    redis = Redis.from_url(_redis_url(settings), socket_connect_timeout=2)
    try:
        if name is not None and value is not None:
            await set_switch(redis, name, None if value == "rules" else value == "on")
        switches = await read_switches(redis, load_rules(settings.routing))
    except (OSError, RedisError) as exc:
        print(f"cannot reach Redis: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    print(f"closed: {'on' if switches.closed else 'off'}    outage: {'on' if switches.outage else 'off'}")
    return 0


def _customers_import(settings: Settings, file: Path) -> int:
    try:
        text = file.read_text(encoding="utf-8-sig")  # spreadsheets often save UTF-8 with a BOM
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read {file}: {exc}", file=sys.stderr)
        return 1
    customers, problems = parse_customers_csv(text)
    for problem in problems:
        print(f"{file}:{problem}", file=sys.stderr)
    try:
        written = asyncio.run(_with_directory(settings, lambda directory: directory.save_many(customers)))
    except (OSError, RedisError) as exc:
        print(f"cannot write to Redis: {exc}", file=sys.stderr)
        return 1
    print(f"imported {written} customer(s)" + (f"; {len(problems)} row(s) skipped" if problems else ""))
    return 1 if problems else 0


def _customers_export(settings: Settings, file: Path | None) -> int:
    try:
        text = customers_to_csv(asyncio.run(_with_directory(settings, CustomerDirectory.all)))
    except (OSError, RedisError) as exc:
        print(f"cannot read from Redis: {exc}", file=sys.stderr)
        return 1
    if file is None:
        sys.stdout.write(text)
    else:
        file.write_text(text, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hotline", description="IVR and call routing for telecom hotlines")
    parser.add_argument("--config", help="TOML settings file (HOTLINE_* variables override it)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the hotline (FastAGI + AMI + web; local Redis and Asterisk by default)")
    serve.add_argument("--menu", type=Path)

    check = sub.add_parser("check", help="validate routing rules and menu files (menus against the rules)")
    check.add_argument("menus", nargs="*")
    check.add_argument("--routing", type=Path, help="routing rules (default: the configured ones)")

    dial = sub.add_parser(
        "dial",
        help="place a real test call through Asterisk and print its outcome",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="A simulated caller (a Local channel) calls the hotline and presses KEYS: the first "
        "WAIT seconds after the hotline answers, then one every GAP seconds, whatever is playing (any key "
        "interrupts a prompt, as a real caller's would). It then stays on the line for HOLD seconds, unless "
        "the hotline hangs up first, and the call's outcome record is printed.",
    )
    dial.add_argument("--from", dest="number", required=True, help="the caller's number")
    dial.add_argument("--name", default="", help="the caller's name")
    dial.add_argument("--keys", nargs="*", default=[], help="DTMF keys to press, e.g. 1 1 1")
    dial.add_argument("--first", dest="first_key", type=float, default=2.0, help="seconds before the first key")
    dial.add_argument("--gap", type=float, default=2.0, help="seconds between keys")
    dial.add_argument("--hold", type=float, default=60.0, help="seconds on the line after the last key")
    dial.add_argument("--wait", type=float, default=240.0, help="seconds to wait for the outcome")
    dial.add_argument("--json", action="store_true")

    calls = sub.add_parser("calls", help="recent call outcome records")
    calls.add_argument("--json", action="store_true", help="one JSON object per line")
    calls.add_argument("-n", type=int, default=20)

    prompts = sub.add_parser("prompts", help="prompt audio")
    prompts_sub = prompts.add_subparsers(dest="prompts_command", required=True)
    build = prompts_sub.add_parser("build", help="synthesize the menu's prompts (espeak-ng, 8 kHz mono WAV)")
    build.add_argument("--menu", type=Path)
    build.add_argument("--out", type=Path)
    build.add_argument("--force", action="store_true")

    switch = sub.add_parser(
        "switch", help="emergency switches at runtime: closed (the hotline plays its closed branch), outage"
    )
    switch.add_argument("name", choices=["closed", "outage"], nargs="?")
    switch.add_argument("value", choices=["on", "off", "rules"], nargs="?",
                        help="rules: forget the runtime value, the routing rules' applies again")

    sub.add_parser(
        "reload", help="publish the edited menu and routing rules to the running hotline (checked first; "
        "calls in progress are not dropped). Sending the server SIGHUP does the same."
    )

    asterisk = sub.add_parser("asterisk", help="Asterisk configuration")
    asterisk_sub = asterisk.add_subparsers(dest="asterisk_command", required=True)
    render = asterisk_sub.add_parser("render", help="render queues.conf and queuerules.conf from the routing rules")
    render.add_argument("--routing", type=Path, help="routing rules (default: the configured ones)")
    render.add_argument("--out", type=Path, help="folder to write into (default: STATE_DIR/asterisk)")

    customers = sub.add_parser("customers", help="customer data")
    customers_sub = customers.add_subparsers(dest="customers_command", required=True)
    accounts = sub.add_parser("accounts", help="the sample account system (balance, bill, package, faults)")
    accounts_sub = accounts.add_subparsers(dest="accounts_command", required=True)
    account_set = accounts_sub.add_parser("set", help="create or update an account's data")
    account_set.add_argument("account")
    account_set.add_argument("--pin", help="4-8 digits, stored as a salted hash")
    account_set.add_argument("--balance", help="e.g. 12.50")
    account_set.add_argument("--due", help="payment due date, YYYY-MM-DD")
    account_set.add_argument("--bill", help="last bill amount, e.g. 88.00")
    account_set.add_argument("--period", help="last bill's month, YYYY-MM")
    account_set.add_argument("--package", help="package code (the menu's query node maps codes to prompts)")
    account_set.add_argument("--fault-ticket", help="open fault ticket number (digits)")
    account_set.add_argument("--fault-status", help="open, in_progress or closed")

    add = customers_sub.add_parser("add", help="add or update one customer")
    add.add_argument("number")
    add.add_argument("--class", dest="customer_class", choices=[c.value for c in CustomerClass], default="public")
    add.add_argument("--name", default="")
    add.add_argument("--account", default="")
    add.add_argument("--language")
    add.add_argument("--urgent", action="store_true", help="escalate this customer's calls")
    load = customers_sub.add_parser(
        "import", help="import customers from CSV (header: number,name,class,account,language[,urgent][,...])"
    )
    load.add_argument("file", type=Path)
    dump = customers_sub.add_parser("export", help="export all customers as CSV")
    dump.add_argument("file", type=Path, nargs="?", help="default: standard output")

    reconcile = sub.add_parser("reconcile", help="check Asterisk's CDRs against the outcome records (exit 1 on "
                               "any call with zero or two records)")
    reconcile.add_argument("--cdr", type=Path, help="the CDR file (default: the local Asterisk's)")
    reconcile.add_argument("--settle", type=float, default=30.0, help="seconds a just-ended call is given")
    reconcile.add_argument("--json", action="store_true")

    tickets = sub.add_parser("tickets", help="work orders: list, show, progress, close (closing calls back)")
    tickets_sub = tickets.add_subparsers(dest="tickets_command")
    listing = tickets_sub.add_parser("list", help="recent tickets (the default)")
    for each in (tickets, listing):
        each.add_argument("-n", type=int, default=20, help="how many")
        each.add_argument("--phone", help="the latest ticket of this caller number")
        each.add_argument("--json", action="store_true")
    tickets_sub.add_parser("show", help="one ticket, whole").add_argument("number")
    progress = tickets_sub.add_parser("progress", help="mark a ticket as being worked on")
    progress.add_argument("number")
    progress.add_argument("--note")
    close = tickets_sub.add_parser("close", help="close a ticket with a result; schedules the return visit")
    close.add_argument("number")
    close.add_argument("--result", required=True, help="result code the menu's revisit.results can say, e.g. resolved")
    close.add_argument("--note")

    args = parser.parse_args(argv)
    # The server logs what it does; one-shot commands print their result and log only trouble.
    quiet = logging.INFO if args.command == "serve" else logging.WARNING
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else quiet, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(args.config, **({"menu": args.menu} if getattr(args, "menu", None) else {}))
    except SettingsProblem as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 2

    if args.command == "check":
        return _check(args.menus, args.routing or settings.routing)
    if args.command == "serve":
        try:
            # uvloop: the AGI benchmark measured about 20% less CPU per call than asyncio's loop.
            return uvloop.run(_serve(settings, _program()))
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
    if args.command == "dial":
        return asyncio.run(
            _dial(
                settings,
                normalize_number(args.number) or args.number,
                args.name,
                args.keys,
                args.first_key,
                args.gap,
                args.hold,
                args.wait,
                args.json,
            )
        )
    if args.command == "calls":
        return asyncio.run(_calls(settings, args.n, args.json))
    if args.command == "prompts":
        try:
            menu = load_menu(settings.menu)
            made = build_prompts(menu, args.out or settings.built_prompts_dir, force=args.force)
        except (ConfigError, PromptBuildError) as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"{made} prompt file(s) built in {args.out or settings.built_prompts_dir}")
        return 0
    if args.command == "reconcile":
        return asyncio.run(_reconcile(settings, args.cdr, args.settle, args.json))
    if args.command == "tickets":
        return asyncio.run(_tickets(settings, args))
    if args.command == "accounts":
        return asyncio.run(_account_set(settings, args))
    if args.command == "reload":
        return asyncio.run(_reload(settings))
    if args.command == "switch":
        return asyncio.run(_switch(settings, args.name, args.value))
    if args.command == "asterisk":
        try:
            rules = load_rules(args.routing or settings.routing)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
        for path in write_asterisk_config(rules, args.out or settings.state_dir / "asterisk"):
            print(path)
        return 0
    if args.command == "customers" and args.customers_command == "import":
        return _customers_import(settings, args.file)
    if args.command == "customers" and args.customers_command == "export":
        return _customers_export(settings, args.file)
    if args.command == "customers":
        return asyncio.run(
            _customer_add(settings, args.number, args.customer_class, args.name, args.account, args.language,
                          args.urgent)
        )
    return 2


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
