"""The `complaintbot` command: serve, demo, migrate, directory import and sync."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog
from aiohttp import web

from bot.app import create_app
from bot.db import open_database
from bot.directory_import import DirectoryError, import_directory
from bot.domain.policy import PolicyError
from bot.logs import configure_logging
from bot.policy import load_policy
from bot.settings import Settings, SettingsError, load_settings
from bot.storage import DatabaseUnavailable
from bot.workers import serve_workers

log = structlog.get_logger("complaintbot")


def _serve(settings: Settings, _args: argparse.Namespace) -> int:
    load_policy(settings.policy_file)  # fail before binding the port
    log.info("starting", host=settings.http_host, port=settings.http_port,
             database=settings.database_url.split("@")[-1], workers=settings.web_workers)
    if settings.api_token is None:
        log.warning("api_disabled", hint="set API_TOKEN to enable POST /api/complaints")
    if settings.web_workers == 1:
        _serve_one(settings)
        return 0
    return serve_workers(settings, _serve_one)


def _serve_one(settings: Settings) -> None:
    """One server process; with several, they share the port (SO_REUSEPORT)."""
    configure_logging(settings.log_format, settings.log_level)  # a worker starts afresh
    web.run_app(create_app(settings), host=settings.http_host, port=settings.http_port,
                print=None, access_log=None, reuse_port=settings.web_workers > 1)


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from bot.demo import DEFAULT_DATABASE, DEFAULT_ORG_FILE, DemoError, run_demo

    try:
        return run_demo(settings, org_file=Path(args.org) if args.org else DEFAULT_ORG_FILE,
                        database=Path(args.database) if args.database else DEFAULT_DATABASE,
                        public=args.public)
    except DemoError as exc:
        print(f"complaintbot: {exc}", file=sys.stderr)
        return 2


def _run(coro: Callable[[], Awaitable[int]]) -> int:
    return asyncio.run(coro())


def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    async def run() -> int:
        async with open_database(settings.database_url):
            print(f"database {settings.database_url.split('@')[-1]} is up to date")
        return 0

    return _run(run)


def _directory_import(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> int:
        async with open_database(settings.database_url):
            summary = await import_directory(Path(args.file))
        print(summary)
        return 0

    return _run(run)


def _directory_sync(settings: Settings, args: argparse.Namespace) -> int:
    from bot.directory_sync import load_mapping, sync_directory
    from bot.ledger import Ledger
    from bot.policy_book import PolicyBook
    from bot.wecom.client import WeComClient

    mapping_file = args.mapping or settings.directory_sync_mapping
    if not mapping_file:
        raise DirectoryError("no mapping file: give --mapping FILE or set DIRECTORY_SYNC_MAPPING")
    if not settings.wecom_configured:
        raise DirectoryError("WeChat Work is not configured (WECOM_CORP_ID, WECOM_SECRET)")
    mapping = load_mapping(Path(mapping_file))

    async def run() -> int:
        policies = PolicyBook(load_policy(settings.policy_file))
        client = WeComClient.from_settings(settings)
        try:
            async with open_database(settings.database_url):
                await policies.store_current()
                report = await sync_directory(client, mapping, Ledger(policies),
                                              dry_run=args.dry_run)
        finally:
            await client.close()
        print(report)
        return 0

    return _run(run)


def _sweep(settings: Settings, args: argparse.Namespace) -> int:
    from bot.clock import utcnow
    from bot.ledger import Ledger
    from bot.policy_book import PolicyBook
    from bot.progress import Progress
    from models import Deadline
    from schedulers.sweeper import sweep

    now = args.at or utcnow()

    async def run() -> int:
        policies = PolicyBook(load_policy(settings.policy_file))
        async with open_database(settings.database_url):
            await policies.store_current()
            due = await Deadline.filter(state="pending", due_at__lte=now).count()
            progress = Progress("sweep", due)
            actions = await sweep(Ledger(policies), now=now, limit=sys.maxsize,
                                  on_progress=progress.update)
            progress.finish()
        for action in actions:
            print(action.describe())
        print(f"{len(actions)} deadline(s) due at {now.isoformat()} dealt with")
        return 0

    return _run(run)


def _outbox(settings: Settings, args: argparse.Namespace) -> int:
    from bot.clock import utcnow
    from schedulers.outbox import revive, undelivered

    async def run() -> int:
        async with open_database(settings.database_url):
            if args.action == "flush":
                return await _flush(settings)
            if args.action == "retry":
                if not await revive(args.id, now=utcnow()):
                    print(f"complaintbot: no dead notification with id {args.id}",
                          file=sys.stderr)
                    return 1
                print(f"notification {args.id} is pending again")
                return 0
            print("id\tstatus\tticket\tkind\tmedium\trecipient\ttries\tnext attempt\tlast error")
            for row in await undelivered():
                number = row.ticket_id  # type: ignore[attr-defined]
                about = f"#{number}" if number is not None else "-"  # a report: no ticket
                print(f"{row.id}\t{row.status}\t{about}\t{row.kind}\t{row.medium}\t"
                      f"{row.recipient or '-'}\t"
                      f"tries={row.tries}\tnext={row.next_attempt_at.isoformat()}\t"
                      f"{row.last_error[:80]}")
            return 0

    return _run(run)


async def _flush(settings: Settings) -> int:
    """Deliver everything due now, round after round; exit 1 if any failed."""
    from bot.clock import utcnow
    from schedulers.outbox import RetryPolicy, deliver_due
    from schedulers.runner import transports_for

    wecom = None
    if settings.wecom_configured:
        from bot.wecom.client import WeComClient

        wecom = WeComClient.from_settings(settings)
    transports = transports_for(settings, wecom)
    retry = RetryPolicy.from_settings(settings)
    sent = failed = 0
    try:
        while True:
            stats = await deliver_due(transports, now=utcnow(), retry=retry, zone=settings.zone)
            sent, failed = sent + stats.sent, failed + stats.retrying + stats.dead
            if stats.claimed == 0:
                break
    finally:
        if wecom is not None:
            await wecom.close()
    print(f"{sent} sent, {failed} failed (media: {', '.join(sorted(transports))})")
    return 0 if failed == 0 else 1


def _prune_attachments(settings: Settings, _args: argparse.Namespace) -> int:
    """Clear the attachment store of files no ticket uses (as the scheduled job does)."""
    from bot.attachments import Attachments
    from bot.clock import utcnow

    async def run() -> int:
        rules = load_policy(settings.policy_file).attachments
        async with open_database(settings.database_url):
            pruned = await Attachments.from_settings(settings).prune(now=utcnow(), rules=rules)
        print(f"files no ticket uses, removed: {pruned.files} ({pruned.bytes / 1e6:.1f} MB); "
              f"leftovers of interrupted writes: {pruned.leftovers}; "
              f"held files whose wait was over: {pruned.expired}")
        return 0

    return _run(run)


def _check(settings: Settings, _args: argparse.Namespace) -> int:
    from bot.check import report, run_checks

    text, code = report(asyncio.run(run_checks(settings)))
    print(text)
    return code


def _report(settings: Settings, args: argparse.Namespace) -> int:
    from bot.clock import utcnow
    from bot.progress import Progress
    from bot.reports.figures import Scope, build_report
    from bot.reports.render import write_files

    async def run() -> int:
        policy = load_policy(settings.policy_file)
        progress = Progress("report", 2)
        async with open_database(settings.database_url):
            progress.update(0, "计算指标与明细…")
            report = await build_report(args.kind, args.period, args.scope, policy,
                                        settings.zone, utcnow())
            progress.update(1, "写入工作簿与图表…")
            paths = write_files(report.figures, report.tickets, report.history, settings.zone,
                                Path(args.out))
        progress.finish()
        for path in paths:
            print(path)
        return 0

    try:
        args.scope = Scope.parse(args.scope)
        return _run(run)
    except ValueError as exc:
        print(f"complaintbot: {exc}", file=sys.stderr)
        return 2


def _instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-03-05T09:00+08:00")
    return moment.astimezone(UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="complaintbot",
        description="WeChat Work bot for the customer-complaint process (see README.md)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="migrate the database and serve HTTP").set_defaults(
        handler=_serve
    )
    demo = commands.add_parser(
        "demo", help="serve the bot with a local WeChat Work and its chat page at /dev/"
    )
    demo.add_argument("--org", help="directory to load (default: examples/org.yaml)")
    demo.add_argument("--database", help="the demo's own SQLite file (default: "
                      "data/demo.sqlite3; DATABASE_URL is never used)")
    demo.add_argument("--public", action="store_true", help="serve beyond loopback: anyone "
                      "who reaches the port can speak as any user and read the API token")
    demo.set_defaults(handler=_demo)
    commands.add_parser("migrate", help="apply database migrations and exit").set_defaults(
        handler=_migrate
    )
    directory = commands.add_parser("directory", help="manage the directory")
    directory_commands = directory.add_subparsers(dest="action", required=True, metavar="ACTION")
    importer = directory_commands.add_parser("import", help="load regions, dealers, staff, groups")
    importer.add_argument("file", help="a YAML file like examples/org.yaml")
    importer.set_defaults(handler=_directory_import)
    syncer = directory_commands.add_parser(
        "sync", help="update staff from WeChat Work's address book (docs/directory-sync.md)")
    syncer.add_argument("--mapping", help="mapping file (default: DIRECTORY_SYNC_MAPPING)")
    syncer.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    syncer.set_defaults(handler=_directory_sync)
    sweeper = commands.add_parser("sweep", help="apply every deadline due now (or --at), once")
    sweeper.add_argument("--at", type=_instant, help="the instant to sweep at (ISO 8601)")
    sweeper.set_defaults(handler=_sweep)
    outbox = commands.add_parser("outbox", help="inspect and deliver queued notifications")
    outbox_commands = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    outbox_commands.add_parser("list", help="show pending, sending and dead notifications")
    retry = outbox_commands.add_parser("retry", help="put a dead notification back in the queue")
    retry.add_argument("id", type=int)
    outbox_commands.add_parser("flush", help="deliver everything due now, once")
    outbox.set_defaults(handler=_outbox)
    files = commands.add_parser("attachments", help="look after the attachment store")
    files_commands = files.add_subparsers(dest="action", required=True, metavar="ACTION")
    files_commands.add_parser(
        "prune", help="remove files no ticket uses, untouched for a day (the bot does it "
        "every 6 hours)").set_defaults(handler=_prune_attachments)
    reporter = commands.add_parser("report", help="write a weekly or monthly report (XLSX, PNG)")
    reporter.add_argument("kind", choices=["weekly", "monthly"])
    reporter.add_argument("--period", help="2026-W10 or 2026-03 (default: the last complete one)")
    reporter.add_argument("--scope", default="brand", help="dealer:CODE, region:CODE or brand")
    reporter.add_argument("--out", default=".", help="directory to write the files into")
    reporter.set_defaults(handler=_report)
    commands.add_parser(
        "check", help="try the database, SMTP, WeChat Work and SMS settings, one line each"
    ).set_defaults(handler=_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"complaintbot: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        return args.handler(settings, args)
    except (PolicyError, DirectoryError) as exc:
        print(f"complaintbot: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        print(f"complaintbot: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"complaintbot: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
