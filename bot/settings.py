"""One settings object, read from the environment and `.env`.

Every name here is documented in docs (the environment table is generated from
this class), so add a description to each new field.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.domain.policy import ZoneName

DEFAULT_POLICY_FILE = Path(__file__).with_name("policy.yaml")


class SettingsError(Exception):
    """The configuration is missing or invalid; the message says what to fix."""


class Settings(BaseSettings):
    """complaintbot's configuration. Names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(
        "sqlite://data/complaintbot.sqlite3",
        description="sqlite://PATH (embedded, one process) or postgres://user:pw@host:port/db",
    )
    policy_file: Path = Field(DEFAULT_POLICY_FILE, description="Process policy (YAML)")
    timezone: ZoneName = Field("Asia/Shanghai", description="Zone for times shown to people")
    http_host: str = Field("127.0.0.1", description="Address the HTTP server binds")
    http_port: int = Field(8080, ge=1, le=65535, description="Port the HTTP server binds")
    web_workers: int = Field(
        1, ge=1, le=64, description="Server processes sharing the port (PostgreSQL only; "
        "SQLite is one process): use the machine's cores",
    )
    api_token: SecretStr | None = Field(
        None, description="Bearer token for /api/*; unset disables the intake API"
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest request body accepted, in bytes"
    )
    attachments_dir: Path = Field(
        Path("data/attachments"), description="Folder of the attachment store (photos and "
        "files on tickets, kept once per content under their sha256); created when missing",
    )
    attachments_secret: SecretStr | None = Field(
        None, description="Key that signs attachment download links (/files/...); the same on "
        "every replica; unset: attachments are listed without links",
    )
    log_format: Literal["console", "json"] = Field(
        "console", description="console (readable) or json (one object per line)"
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")

    wecom_corp_id: str = Field("", description="WeChat Work CorpID")
    wecom_agent_id: int | None = Field(None, description="AgentId of the self-built app")
    wecom_secret: SecretStr | None = Field(None, description="Secret of the self-built app")
    wecom_token: str = Field("", description="Callback Token of the self-built app")
    wecom_aes_key: str = Field("", description="Callback EncodingAESKey of the self-built app")
    wecom_robot_token: str = Field("", description="Callback Token of the smart robot")
    wecom_robot_aes_key: str = Field("", description="Callback EncodingAESKey of the smart robot")
    wecom_robot_name: str = Field("投诉助手", description="The robot's @-name in groups")
    wecom_robot_mode: Literal["callback", "long_connection"] = Field(
        "callback", description="How the smart robot's messages arrive: callback (HTTP "
        "POST /wecom/robot, encrypted) or long_connection (one WebSocket the bot opens to "
        "WeChat Work, doc 101463; allows pushes into groups); one mode per robot",
    )
    wecom_robot_bot_id: str = Field("", description="BotID of the smart robot (long_connection)")
    wecom_robot_secret: SecretStr | None = Field(
        None, description="Secret of the smart robot (long_connection)"
    )
    wecom_robot_ws_url: str = Field(
        "wss://openws.work.weixin.qq.com", description="WebSocket URL of the long connection"
    )
    wecom_robot_ping_seconds: float = Field(
        30, gt=0, description="How often the long connection sends its ping"
    )
    wecom_robot_reconnect_seconds: float = Field(
        1, gt=0, description="First wait before reconnecting a dropped long connection; "
        "doubles per failure (with jitter) up to 60 s",
    )
    wecom_robot_displaced_wait_seconds: float = Field(
        30, ge=0, description="Wait after another connection displaced this one before "
        "subscribing again (two deployments of one robot must not fight for it)",
    )
    wecom_robot_lease_seconds: float = Field(
        20, gt=0, description="Lease of the one replica holding the long connection; another "
        "takes over this long after the holder dies",
    )
    wecom_api_base: str = Field(
        "https://qyapi.weixin.qq.com/cgi-bin", description="WeChat Work API base URL"
    )
    # An hour, not the usual 5 minutes: a refused click is lost for good,
    # WeChat Work re-delivers late and hosts drift; replays are stopped by the
    # msgid dedupe, not by this window.
    wecom_callback_max_skew: int = Field(
        3600, ge=1,
        description="Largest clock difference (s) accepted in a callback's timestamp "
        "(late re-deliveries, drifting clocks; refusals counted in /metrics)",
    )
    wecom_api_timeout_seconds: float = Field(
        10, gt=0, description="Timeout of one WeChat Work API request"
    )

    smtp_host: str = Field("", description="SMTP server; empty disables e-mail delivery")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port")
    smtp_username: str = Field("", description="SMTP login user")
    smtp_password: SecretStr | None = Field(None, description="SMTP login password")
    smtp_from: str = Field("complaintbot@localhost", description="Sender address of e-mails")
    smtp_starttls: bool = Field(True, description="Upgrade the SMTP connection with STARTTLS")
    smtp_ssl: bool = Field(
        False, description="Connect with implicit TLS (port 465) instead of STARTTLS"
    )
    smtp_timeout_seconds: float = Field(30, gt=0, description="SMTP connect and send timeout")
    smtp_connections: int = Field(
        2, ge=1, le=32, description="SMTP connections kept open, each sending one e-mail at a time"
    )

    sms_provider: Literal["log", "tencent", "aliyun"] = Field(
        "log", description="log (development), tencent or aliyun"
    )
    sms_sign_name: str = Field("", description="SMS signature approved by the provider")
    sms_template_accepted: str = Field(
        "", description="Provider template id of the customer's 'complaint accepted' SMS"
    )
    sms_template_closed: str = Field(
        "", description="Provider template id of the customer's 'complaint closed' SMS"
    )
    sms_template_closed_survey: str = Field(
        "", description="Provider template id of the 'complaint closed' SMS with the "
        "survey link (used instead of SMS_TEMPLATE_CLOSED when the survey is on)"
    )
    tencent_secret_id: str = Field("", description="Tencent Cloud SecretId (SMS_PROVIDER=tencent)")
    tencent_secret_key: SecretStr | None = Field(None, description="Tencent Cloud SecretKey")
    tencent_sms_app_id: str = Field("", description="Tencent Cloud SmsSdkAppId")
    tencent_sms_region: str = Field("ap-guangzhou", description="Tencent Cloud SMS region")
    tencent_sms_endpoint: str = Field(
        "https://sms.tencentcloudapi.com", description="Tencent Cloud SMS API: scheme and host "
        "(a local stand-in for trials, e.g. http://127.0.0.1:9100)",
    )
    aliyun_access_key_id: str = Field(
        "", description="Alibaba Cloud AccessKey id (SMS_PROVIDER=aliyun)"
    )
    aliyun_access_key_secret: SecretStr | None = Field(
        None, description="Alibaba Cloud AccessKey secret"
    )
    aliyun_sms_endpoint: str = Field(
        "https://dysmsapi.aliyuncs.com", description="Alibaba Cloud SMS API: scheme and host "
        "(a local stand-in for trials, e.g. http://127.0.0.1:9100)",
    )
    sms_timeout_seconds: float = Field(
        10, gt=0, description="Timeout of one request to the SMS provider"
    )

    public_base_url: str = Field(
        "", description="The bot's address as a customer's phone or a colleague's browser "
        "reaches it (e.g. https://bot.example.com): the survey links in the closing SMS and "
        "the attachment download links start with it; empty: the SMS carries no survey link "
        "and attachment links use http://HTTP_HOST:HTTP_PORT",
    )
    survey_secret: SecretStr | None = Field(
        None, description="Key that signs the survey links (HMAC-SHA256; 32+ random "
        "characters; changing it voids the links already sent); unset: no survey link",
    )

    sweep_interval_seconds: float = Field(
        5, gt=0, description="How often the deadline sweep runs"
    )
    outbox_interval_seconds: float = Field(
        2, gt=0, description="How often the outbox worker delivers due notifications"
    )
    outbox_concurrency: int = Field(
        8, ge=1, le=64, description="Recipients of one medium the outbox sends to at once "
        "(each recipient's notifications stay in order)",
    )
    outbox_max_tries: int = Field(
        8, ge=1, description="Delivery attempts before a notification may be marked dead"
    )
    outbox_give_up_after_seconds: float = Field(
        86400, ge=0, description="A failing notification is retried at least this long "
        "after it was queued (and at least OUTBOX_MAX_TRIES times) before it is marked dead",
    )
    outbox_backoff_seconds: float = Field(
        30, gt=0, description="Wait after the first failed delivery; doubles per try"
    )
    outbox_backoff_cap_seconds: float = Field(
        3600, gt=0, description="Longest wait between delivery attempts"
    )
    outbox_lease_seconds: float = Field(
        300, gt=0, description="How long a claimed notification stays with one worker"
    )
    report_weekly_cron: str = Field(
        "0 9 * * mon",
        description="When the weekly reports go out: a crontab line (minute hour day month "
        "weekday; name weekdays, mon..sun) in TIMEZONE; empty disables them",
    )
    report_monthly_cron: str = Field(
        "0 9 1 * *", description="When the monthly reports go out (crontab, as above)"
    )
    report_renderer_cpu_share: float = Field(
        1.0, gt=0, le=1, description="Share of one CPU a report run may use: the report "
        "renderer pauses to stay under it, so that on a machine whose cores are all busy "
        "callbacks keep their pace (1: as fast as it can)",
    )
    report_catchup_delay_seconds: float = Field(
        60, ge=0, description="After start-up, wait this long before delivering any report "
        "missed while down (then checked hourly)",
    )
    directory_sync_mapping: str = Field(
        "", description="Mapping file of `complaintbot directory sync` (WeChat Work departments "
        "and tags to regions, dealers and roles; docs/directory-sync.md); empty: no sync",
    )
    directory_sync_cron: str = Field(
        "", description="When the directory sync runs by itself: a crontab line in TIMEZONE "
        "(e.g. 30 6 * * *); empty disables it; needs DIRECTORY_SYNC_MAPPING",
    )
    callback_retention_days: float = Field(
        7, gt=0, description="How long a processed callback and its reply are kept, to answer "
        "a redelivery of it alike (WeChat Work redelivers within seconds); older ones are "
        "deleted hourly",
    )
    health_max_overdue_seconds: float = Field(
        300, gt=0, description="/healthz answers 503 when a due deadline waits longer than this"
    )
    health_write_timeout_seconds: float = Field(
        3, gt=0, description="/healthz answers 503 when its heartbeat write takes longer"
    )

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgres://", "postgresql://")):
            raise ValueError("must start with sqlite:// or postgres://")
        return value

    @field_validator("web_workers")
    @classmethod
    def _one_sqlite_process(cls, value: int, info: ValidationInfo) -> int:
        if value > 1 and str(info.data.get("database_url", "")).startswith("sqlite://"):
            raise ValueError("more than 1 needs PostgreSQL: SQLite is served by one process")
        return value

    @field_validator("report_weekly_cron", "report_monthly_cron", "directory_sync_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        if value.strip():
            CronTrigger.from_crontab(value)  # ValueError says what is wrong
        return value.strip()

    @field_validator("public_base_url")
    @classmethod
    def _web_address(cls, value: str) -> str:
        if value.strip() and not value.strip().startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http://)")
        return value.strip().rstrip("/")

    @field_validator("survey_secret", "attachments_secret")
    @classmethod
    def _long_key(cls, value: SecretStr | None) -> SecretStr | None:
        # A short key could be found by trying: every link it signs would be forgeable.
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (openssl rand -base64 32)")
        return value

    @field_validator("tencent_sms_endpoint", "aliyun_sms_endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        url = urlsplit(value.strip())
        if url.scheme not in ("http", "https") or not url.netloc or url.path not in ("", "/") \
                or url.query:
            raise ValueError("must be http(s)://host[:port], without a path")
        return f"{url.scheme}://{url.netloc}"

    @field_validator("policy_file")
    @classmethod
    def _policy_exists(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The zone in which times are shown to people."""
        return ZoneInfo(self.timezone)

    @property
    def base_url(self) -> str:
        """Where people's browsers reach the bot, without a trailing slash."""
        return self.public_base_url or f"http://{self.http_host}:{self.http_port}"

    @property
    def survey_enabled(self) -> bool:
        """R23: the closing SMS carries the survey link (both settings set)."""
        return bool(self.public_base_url) and self.survey_secret is not None

    @property
    def wecom_configured(self) -> bool:
        """True when real WeChat Work credentials are set."""
        return bool(self.wecom_corp_id and self.wecom_secret)


# tortoise-orm writes TIMEZONE=UTC into the environment when it opens the
# database; the zone people read is the one the environment had at start-up.
_TIMEZONE_AT_START = os.environ.get("TIMEZONE")


@contextmanager
def _start_up_timezone() -> Iterator[None]:
    current = os.environ.get("TIMEZONE")
    _set_env("TIMEZONE", _TIMEZONE_AT_START)
    try:
        yield
    finally:
        _set_env("TIMEZONE", current)


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into one readable message."""
    try:
        with _start_up_timezone():
            return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper() or "settings"
            lines.append(f"  {name}: {err['msg']}")
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
