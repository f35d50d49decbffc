"""ops_api, monitoring and storage settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from libs.common.settings.base import Section


class OpsApiSettings(Section):
    host: str = Field(default="127.0.0.1", description="Bind address")
    port: int = Field(default=8000, ge=0, le=65535, description="HTTP port (0 = any free port)")
    operator_token: SecretStr = Field(default=SecretStr("change-me-operator"),
                                      description="Bearer token for control actions (env BNML_OPS_API__OPERATOR_TOKEN)")
    viewer_token: SecretStr = Field(default=SecretStr("change-me-viewer"), description="Bearer token for reads")
    kill_switch_ack_timeout_s: float = Field(default=2.0, gt=0, le=60)
    metrics_port: int = Field(default=9105, ge=0, le=65535, description="Prometheus port (also /metrics on the API)")


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


class AlertingSettings(Section):
    telegram: TelegramSettings = TelegramSettings()
    webhook: WebhookSettings = WebhookSettings()
    email: EmailSettings = EmailSettings()


class MonitoringSettings(Section):
    heartbeat_interval_s: float = Field(default=1.0, gt=0, le=60, description="Seconds between heartbeats")
    heartbeat_timeout_s: float = Field(default=10.0, gt=0, description="Heartbeat age after which a service is down")
    alerting: AlertingSettings = AlertingSettings()


class BackupSettings(Section):
    enabled: bool = Field(default=True, description="Periodic pg_dump + model pointer into backups dir")
    interval_s: float = Field(default=3600, gt=0)
    retention: int = Field(default=24, ge=1, description="Backups kept")
    dir: str = "artifacts/backups"


class StorageSettings(Section):
    artifacts_dir: str = "artifacts"
    backup: BackupSettings = BackupSettings()
