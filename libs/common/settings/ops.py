"""ops_api, monitoring and storage settings."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, SecretStr

from libs.common.settings.base import Section


class OpsApiSettings(Section):
    host: str = Field(default="127.0.0.1", description="Bind address")
    port: int = Field(default=8000, ge=0, le=65535, description="HTTP port (0 = any free port)")
    operator_token: SecretStr = Field(
        default=SecretStr("change-me-operator"),
        description="Bearer token for control actions (env BNML_OPS_API__OPERATOR_TOKEN)",
    )
    viewer_token: SecretStr = Field(
        default=SecretStr("change-me-viewer"), description="Bearer token for reads"
    )
    kill_switch_ack_timeout_s: float = Field(default=2.0, gt=0, le=60)
    auth_max_failures: int = Field(
        default=5, ge=1, description="Failed auth attempts per client before throttling"
    )
    auth_window_s: float = Field(
        default=60.0, gt=0, description="Window in which failures are counted, seconds"
    )
    auth_block_s: float = Field(
        default=60.0, gt=0, description="How long a throttled client gets 429, seconds"
    )
    metrics_port: int = Field(
        default=9105, ge=0, le=65535, description="Prometheus port (also /metrics on the API)"
    )


class KillSwitchSettings(Section):
    """Operator authority over the kill switch: a release is applied only if signed with this key."""

    release_key: SecretStr = Field(
        default=SecretStr(""),
        description="HMAC key (>= 16 characters) that signs and verifies kill-switch releases"
        " (env BNML_KILL_SWITCH__RELEASE_KEY; the launcher generates one). Unset: no release is ever applied",
    )


class TelegramSettings(Section):
    enabled: bool = False
    bot_token: SecretStr = SecretStr("")
    chat_id: str = ""


class WebhookSettings(Section):
    enabled: bool = False
    url: str = ""


class EmailSettings(Section):
    enabled: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    sender: str = "bnml@localhost"
    recipients: list[str] = Field(default_factory=list)
    username: str = ""
    password: SecretStr = SecretStr("")
    secure_mode: str = Field(
        default="starttls",
        pattern=r"^(insecure|starttls|ssl)$",
        description="insecure (plain SMTP) | starttls | ssl",
    )


class AlertingSettings(Section):
    telegram: TelegramSettings = TelegramSettings()
    webhook: WebhookSettings = WebhookSettings()
    email: EmailSettings = EmailSettings()
    min_severity: str = Field(
        default="SEV-3",
        pattern=r"^(SEV-1|SEV-2|SEV-3|INFO)$",
        description="Least severe alert delivered to external channels",
    )
    dedup_window_s: float = Field(
        default=300.0, ge=0, description="Same dedup_key delivered once per window, s"
    )
    rate_limit_per_min: int = Field(default=20, ge=1, description="Max deliveries per channel per minute")
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="Per-channel delivery timeout, seconds")


class DodSettings(Section):
    """Definition-of-Done v1 thresholds, checked per UTC day."""

    heartbeat_coverage_min_pct: float = Field(
        default=99.0, ge=0, le=100, description="Per service, % of minutes"
    )
    stale_share_max_pct: float = Field(default=1.0, ge=0, le=100, description="% of the day with stale data")
    stale_gap_max_s: float = Field(default=300.0, gt=0, description="Longest stale stretch allowed, seconds")
    order_error_rate_max_pct: float = Field(
        default=2.0, ge=0, le=100, description="REJECTED+UNKNOWN / orders, %"
    )
    alert_delivery_min_pct: float = Field(default=99.0, ge=0, le=100, description="Successful deliveries, %")
    halt_grace_s: float = Field(
        default=60.0, gt=0, description="A loss-budget breach must be followed by a halt within this, s"
    )
    daily_loss_budget_usdt: Decimal | None = Field(
        default=None, gt=0, description="USDT (None: risk.daily_loss_budget_usdt)"
    )
    reports_dir: str = Field(
        default="artifacts/reports/dod", description="daily/<date>.json + dod_v1_summary.md"
    )
    auto_daily: bool = Field(
        default=True, description="ops_api writes each closed UTC day's report by itself"
    )
    auto_grace_s: float = Field(
        default=300.0,
        ge=0,
        le=6 * 3600,
        description="How long after UTC midnight the automatic report waits, seconds",
    )
    deliver: bool = Field(default=False, description="Also send each automatic report's result as an alert")


class IncidentSettings(Section):
    """Rules that open incidents from bus events."""

    order_loop_max_orders: int = Field(
        default=30, ge=2, description="Orders on one symbol in the window = loop"
    )
    order_loop_window_s: float = Field(default=60.0, gt=0)
    abnormal_loss_usdt: float = Field(
        default=100.0, gt=0, description="One fill losing more than this is SEV-1"
    )
    stale_incident_s: float = Field(default=120.0, gt=0, description="Stale for this long opens a SEV-2")
    breaker_stuck_s: float = Field(default=3600.0, gt=0, description="Breaker on for this long opens a SEV-2")
    postmortem_dir: str = "artifacts/reports/incidents"


class MonitoringSettings(Section):
    heartbeat_interval_s: float = Field(default=1.0, gt=0, le=60, description="Seconds between heartbeats")
    heartbeat_timeout_s: float = Field(
        default=10.0, gt=0, description="Heartbeat age after which a service is down"
    )
    alerting: AlertingSettings = AlertingSettings()
    dod: DodSettings = DodSettings()
    incidents: IncidentSettings = IncidentSettings()


class BackupSettings(Section):
    enabled: bool = Field(default=True, description="Periodic pg_dump + model pointer into backups dir")
    interval_s: float = Field(default=3600, gt=0)
    retention: int = Field(default=24, ge=1, description="Backups kept")
    dir: str = "artifacts/backups"
    models_dir: str = Field(default="artifacts/models", description="Holds `current`, the registry pointer")
    timeout_s: float = Field(default=600.0, gt=0, description="pg_dump/pg_restore time limit, seconds")


class StorageSettings(Section):
    artifacts_dir: str = "artifacts"
    backup: BackupSettings = BackupSettings()
