"""Structured logging: readable in a terminal, one JSON object per line in production."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(fmt: str = "console", level: str = "INFO", *, cache: bool = True) -> None:
    """Route structlog and the standard library's logging through one renderer.
    With `cache`, each logger keeps its first configuration (faster); tests that
    configure logging pass False, or later `capture_logs` would not reach the
    module loggers that were used meanwhile."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache,
    )
    # The console renderer prints a traceback itself; JSON needs the exception
    # turned into data (type, message, frames), or the line says `"exc_info":
    # true` and nothing else. Without locals: a frame's variables may hold a
    # customer's phone or VIN.
    exceptions: list[structlog.types.Processor] = (
        [structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False))]
        if fmt == "json" else []
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, *exceptions, renderer,
        ])
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # APScheduler logs every run of every job at INFO: a line every few seconds.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # ...and a warning on every tick that finds the last round still running
    # (an outbox round waiting out a slow WeChat Work): expected, not news. The
    # jobs log their own failures (schedulers/runner.py).
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
    # The database drivers log every statement with its parameters at DEBUG: the
    # customer's phone and VIN would reach the log (privacy, even at DEBUG).
    for name in ("tortoise.db_client", "aiosqlite"):
        logging.getLogger(name).setLevel(logging.INFO)
