"""Prometheus metrics, served at GET /metrics (webhooks/metrics.py).

Counters live in one registry of this process (not prometheus_client's global
one), created once at import, and are incremented where things happen: the
outbox worker, the callback endpoints, the command router, the WeChat Work
client. Gauges describe the database (due deadlines, the outbox queue) and are
computed from it at every scrape, so every replica reports the same queue.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

REGISTRY = CollectorRegistry()

OUTBOX_FAILURES = Counter(
    "complaintbot_outbox_failures", "Failed notification deliveries (each failed try)",
    ["medium"], registry=REGISTRY,
)
CALLBACKS = Counter(
    "complaintbot_callbacks",
    "WeChat Work callbacks received, by endpoint (robot, app) and outcome "
    "(applied, duplicate, answered: a command that changes nothing, retries included; "
    "failed, refused, unconfigured, url_verified)",
    ["endpoint", "outcome"], registry=REGISTRY,
)
CALLBACK_REFUSALS = Counter(
    "complaintbot_callback_refusals",
    "WeChat Work callbacks refused before reading them, by endpoint and reason "
    "(e.g. 'timestamp outside the allowed window': a late re-delivery or a drifting clock)",
    ["endpoint", "reason"], registry=REGISTRY,
)
COMMANDS = Counter(
    "complaintbot_commands",
    "Chat commands and card clicks handled, by command and outcome "
    "(ok, usage_error, forbidden, refused, failed)",
    ["command", "outcome"], registry=REGISTRY,
)
WECOM_API_ERRORS = Counter(
    "complaintbot_wecom_api_errors",
    "WeChat Work API calls that failed, by errcode (-1: transport or HTTP error), each try",
    ["errcode"], registry=REGISTRY,
)


def exposition(
    *, oldest_overdue_seconds: float, deadlines_due: int,
    outbox_depth: Mapping[tuple[str, str], int], free_bytes: Mapping[str, int],
) -> bytes:
    """The text a scrape answers: the counters, and the gauges from the
    database state given (`outbox_depth` maps (medium, status) to rows) and
    the free space of the disks the bot writes to (`free_bytes` by store)."""
    gauges = CollectorRegistry()
    free = Gauge("complaintbot_storage_free_bytes",
                 "Free space on the disk of each store the bot writes to (attachments; the "
                 "SQLite database's folder): alert before it runs out", ["store"],
                 registry=gauges)
    for store, available in free_bytes.items():
        free.labels(store=store).set(available)
    Gauge("complaintbot_deadline_oldest_overdue_seconds",
          "How long the oldest due deadline has waited unapplied (0: none waits)",
          registry=gauges).set(oldest_overdue_seconds)
    Gauge("complaintbot_deadlines_due", "Deadlines due and not yet applied",
          registry=gauges).set(deadlines_due)
    depth = Gauge("complaintbot_outbox_depth", "Notifications not delivered, by medium and status",
                  ["medium", "status"], registry=gauges)
    for (medium, status), rows in outbox_depth.items():
        depth.labels(medium=medium, status=status).set(rows)
    return generate_latest(REGISTRY) + generate_latest(gauges)
