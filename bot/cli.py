"""The `complaintbot` command: serve, migrate, directory import."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from aiohttp import web

from bot.app import create_app
from bot.db import open_database
from bot.directory_import import DirectoryError, import_directory
from bot.logs import configure_logging
from bot.policy import PolicyError, load_policy
from bot.settings import Settings, SettingsError, load_settings

log = structlog.get_logger("complaintbot")


def _serve(settings: Settings, _args: argparse.Namespace) -> int:
    load_policy(settings.policy_file)  # fail before binding the port
    log.info("starting", host=settings.http_host, port=settings.http_port,
             database=settings.database_url.split("@")[-1])
    if settings.api_token is None:
        log.warning("api_disabled", hint="set API_TOKEN to enable POST /api/complaints")
    web.run_app(create_app(settings), host=settings.http_host, port=settings.http_port,
                print=None, access_log=None)
    return 0


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="complaintbot",
        description="WeChat Work bot for the customer-complaint process (see README.md)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="migrate the database and serve HTTP").set_defaults(
        handler=_serve
    )
    commands.add_parser("migrate", help="apply database migrations and exit").set_defaults(
        handler=_migrate
    )
    directory = commands.add_parser("directory", help="manage the directory")
    directory_commands = directory.add_subparsers(dest="action", required=True, metavar="ACTION")
    importer = directory_commands.add_parser("import", help="load regions, dealers, staff, groups")
    importer.add_argument("file", help="a YAML file like examples/org.yaml")
    importer.set_defaults(handler=_directory_import)
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
    except OSError as exc:
        print(f"complaintbot: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
