"""Configuration: `configs/bot.yaml` read into pydantic-settings models, every value overridable by env.

Environment overrides: `BNML_<SECTION>__<KEY>` (e.g. `BNML_RISK__MAX_NOTIONAL_USDT=50`), plus the
conventional `NATS_URL` and `DATABASE_URL`. A bad value raises `ConfigurationError` naming the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from libs.common.errors import ConfigurationError
from libs.common.settings.base import Section
from libs.common.settings.execution import ExecutionSettings
from libs.common.settings.market_data import MarketDataSettings
from libs.common.settings.ops import KillSwitchSettings, MonitoringSettings, OpsApiSettings, StorageSettings
from libs.common.settings.risk import RiskSettings
from libs.common.settings.signal import SignalSettings

DEFAULT_CONFIG = Path("configs/bot.yaml")
PLACEHOLDER_PREFIX = "change-me"


# The JetStream streams (libs/common/subjects.py STREAMS); repeated here so settings need not import the contracts.
STREAM_NAMES = (
    "KILL_SWITCH",
    "VERDICTS",
    "ORDERS",
    "FILLS",
    "RISK_EVENTS",
    "MD_UNIVERSE",
    "SIGNAL_DRIFT",
    "ALERTS",
    "DLQ",
)
CRITICAL_STREAMS = ("KILL_SWITCH", "VERDICTS", "ORDERS", "FILLS")  # StreamSpec.critical


class NatsSettings(Section):
    url: str = Field(
        default="",
        description="nats:// URL, or a comma-separated list of a cluster's URLs; empty = "
        "the launcher's embedded server (env NATS_URL)",
    )
    user: str = ""
    password: SecretStr = SecretStr("")
    replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="JetStream replicas of every stream (1 = one server; 3 on a three-node cluster)",
    )
    stream_replicas: dict[str, int] = Field(
        default_factory=dict,
        description="Per-stream replicas, overriding `replicas` (e.g. {KILL_SWITCH: 3, DLQ: 1})",
    )

    @model_validator(mode="after")
    def _urls_and_streams_known(self) -> NatsSettings:
        for u in self.servers():
            if not re.fullmatch(r"(nats|tls|ws|wss)://\S+", u):
                raise ValueError(f"url: {u!r} is not a nats:// URL")
        for name, n in self.stream_replicas.items():
            if name not in STREAM_NAMES:
                raise ValueError(
                    f"stream_replicas: {name!r} is not a stream (one of {', '.join(STREAM_NAMES)})"
                )
            if not 1 <= n <= 5:
                raise ValueError(f"stream_replicas.{name}: {n} replicas; JetStream allows 1 to 5")
            if name in CRITICAL_STREAMS and n < self.replicas:
                raise ValueError(
                    f"stream_replicas.{name}: {n} is fewer than replicas ({self.replicas}); the kill "
                    "switch, verdicts, orders and fills never have fewer replicas than the rest"
                )
        return self

    def servers(self) -> list[str]:
        """The URLs in `url` (one, or a cluster's comma-separated list), in order."""
        return split_urls(self.url)

    def replicas_for(self, stream: str) -> int:
        return self.stream_replicas.get(stream, self.replicas)


def split_urls(url: str) -> list[str]:
    """`nats://a:4222, nats://b:4222` -> both; one URL -> [it]; empty -> []."""
    return [u.strip() for u in url.split(",") if u.strip()]


class DatabaseSettings(Section):
    url: SecretStr = Field(
        default=SecretStr(""), description="postgresql:// URL; empty = embedded (env DATABASE_URL)"
    )
    pool_min: int = Field(default=1, ge=1)
    pool_max: int = Field(default=5, ge=1)


class LiveSettings(Section):
    confirm: bool = Field(default=False, description="Must be true, with keys, to trade live")
    api_key: SecretStr = Field(default=SecretStr(""), description="env BNML_LIVE__API_KEY")
    api_secret: SecretStr = Field(default=SecretStr(""), description="env BNML_LIVE__API_SECRET")


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BNML_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        case_sensitive=False,
    )

    mode: Literal["paper", "live"] = Field(default="paper", description="paper is the default everywhere")
    paper_market_data_mode: Literal["synthetic", "live", "replay"] = "synthetic"
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT", "ETH/USDT", "XRP/USDT"], min_length=1)
    nats: NatsSettings = NatsSettings()
    database: DatabaseSettings = DatabaseSettings()
    live: LiveSettings = LiveSettings()
    market_data: MarketDataSettings = MarketDataSettings()
    signal: SignalSettings = SignalSettings()
    risk: RiskSettings = RiskSettings()
    execution: ExecutionSettings = ExecutionSettings()
    ops_api: OpsApiSettings = OpsApiSettings()
    kill_switch: KillSwitchSettings = KillSwitchSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    storage: StorageSettings = StorageSettings()

    @model_validator(mode="after")
    def _symbols_are_ccxt_form(self) -> BotSettings:
        for s in self.symbols:
            if not re.fullmatch(r"[A-Z0-9]{2,15}/[A-Z0-9]{2,10}", s):
                raise ValueError(f"symbols: {s!r} is not a ccxt spot symbol like BTC/USDT")
        return self

    @model_validator(mode="after")
    def _live_needs_keys_and_confirmation(self) -> BotSettings:
        if self.mode == "live":
            if not self.live.confirm:
                raise ValueError("mode: live needs live.confirm: true")
        return self

    @model_validator(mode="after")
    def _resolve_cross_section_fallbacks(self) -> BotSettings:
        """Every setting that falls back on another section's is resolved here, once: the sections the services
        and cores read, and the configuration logged at start (`effective`), hold the values in use.

        - `risk.stale_after_s` unset: `market_data.stale_after_s` (one source of truth for freshness);
        - `risk.heartbeat_timeout_s` unset: `monitoring.heartbeat_timeout_s`;
        - live, `risk.account_stale_after_s` unset: three of `execution.reconcile_interval_s` (paper: unused);
        - `monitoring.dod.daily_loss_budget_usdt` unset: `risk.daily_loss_budget_usdt`.

        A copy made with `model_copy(update=...)` is not validated again: build a new `BotSettings` (or
        `model_validate` the dump) to resolve against changed sections."""
        risk = self.risk
        update: dict[str, Any] = {}
        if risk.stale_after_s is None:
            update["stale_after_s"] = self.market_data.stale_after_s
        if risk.heartbeat_timeout_s is None:
            update["heartbeat_timeout_s"] = self.monitoring.heartbeat_timeout_s
        if self.mode == "live" and risk.account_stale_after_s is None:
            update["account_stale_after_s"] = 3 * self.execution.reconcile_interval_s
        if update:
            self.risk = risk.model_copy(update=update)
        dod = self.monitoring.dod
        if dod.daily_loss_budget_usdt is None:
            budget = dod.model_copy(update={"daily_loss_budget_usdt": risk.daily_loss_budget_usdt})
            self.monitoring = self.monitoring.model_copy(update={"dod": budget})
        return self

    def live_keys_missing(self) -> bool:
        """True in live mode without both exchange keys. Only the service that signs orders needs them (and
        refuses to start without them, libs/common/service.py); the others run live without ever holding them."""
        return self.mode == "live" and not (
            self.live.api_key.get_secret_value() and self.live.api_secret.get_secret_value()
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the YAML file (passed as init kwargs), which beats the defaults.
        return env_settings, init_settings

    def effective(self) -> dict[str, Any]:
        """The configuration as logged at start-up: secrets masked, URLs without passwords."""
        data = self.model_dump(mode="json")
        data["database"]["url"] = mask_url(self.database.url.get_secret_value())
        return data


def mask_url(url: str) -> str:
    """Hide the password in a URL: `postgresql://u:secret@h/db` -> `postgresql://u:***@h/db`."""
    return re.sub(r"(://[^:/@]+:)([^@]+)(@)", r"\1***\3", url)


def _format_error(err: ValidationError) -> tuple[str, str]:
    first = err.errors()[0]
    return ".".join(str(p) for p in first["loc"]) or "<root>", first["msg"]


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get("BNML_CONFIG") or DEFAULT_CONFIG)


def load_settings(path: str | os.PathLike[str] | None = None) -> BotSettings:
    """Read the YAML file (if present), apply env overrides, validate; raise ConfigurationError naming the key."""
    file = config_path(path)
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigurationError(str(file), f"not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigurationError(str(file), "top level must be a mapping")
    elif path is not None:
        raise ConfigurationError(str(file), "file not found")
    data = _apply_conventional_env(data)
    try:
        settings = BotSettings(**data)
    except ValidationError as exc:
        key, msg = _format_error(exc)
        raise ConfigurationError(key, msg) from None
    return settings


def _apply_conventional_env(data: dict[str, Any]) -> dict[str, Any]:
    """NATS_URL and DATABASE_URL, the names every tool knows, win over the file."""
    data = dict(data)
    if os.environ.get("NATS_URL"):
        data["nats"] = {**(data.get("nats") or {}), "url": os.environ["NATS_URL"]}
    if os.environ.get("DATABASE_URL"):
        data["database"] = {**(data.get("database") or {}), "url": os.environ["DATABASE_URL"]}
    return data


def refuse_placeholder_secrets(settings: BotSettings) -> None:
    """Tokens left at their `change-me` placeholder refuse to start (ops_api calls this)."""
    for key, value in (
        ("ops_api.operator_token", settings.ops_api.operator_token),
        ("ops_api.viewer_token", settings.ops_api.viewer_token),
    ):
        if value.get_secret_value().startswith(PLACEHOLDER_PREFIX) or len(value.get_secret_value()) < 12:
            raise ConfigurationError(
                key, "still a placeholder or shorter than 12 characters; set a real token"
            )


__all__ = [
    "BotSettings",
    "ConfigurationError",
    "DatabaseSettings",
    "ExecutionSettings",
    "KillSwitchSettings",
    "LiveSettings",
    "MarketDataSettings",
    "MonitoringSettings",
    "NatsSettings",
    "OpsApiSettings",
    "RiskSettings",
    "SignalSettings",
    "StorageSettings",
    "CRITICAL_STREAMS",
    "STREAM_NAMES",
    "load_settings",
    "mask_url",
    "refuse_placeholder_secrets",
    "split_urls",
]
