"""The one settings object, read from FLEETWATCH_* environment variables."""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class MqttTarget(BaseModel):
    """Where and how to reach the broker, parsed from an mqtt:// or mqtts:// URL."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    # The local address to connect from (`?source=127.0.0.2`). paho binds every client's
    # socket before connecting, so each takes an ephemeral port of its source address for
    # itself, whatever broker it goes to: one address has ~28,000 (net.ipv4.
    # ip_local_port_range). A simulator of many devices gives each process its own.
    source: str = ""

    @classmethod
    def from_url(cls, url: str) -> MqttTarget:
        """Parse `mqtt://user:pass@host:port[?source=ADDRESS]` (`mqtts://` for TLS)."""
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        unknown = set(query) - {"source"}
        if unknown:
            raise ValueError(f"MQTT URL: unknown parameter(s) {sorted(unknown)}")
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("MQTT URL has no host")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            source=query.get("source", [""])[-1],
        )

    def redacted(self) -> str:
        """The URL with the password hidden, for logs."""
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


# The ingest's client id when neither FLEETWATCH_INGEST_CLIENT_ID nor a login names it.
DEFAULT_INGEST_CLIENT_ID = "fleetwatch-ingest-1"


def own_login(url: str | None, shared: MqttTarget) -> MqttTarget:
    """A part's own broker login when its URL is set (FLEETWATCH_CAMPAIGNS_MQTT_URL,
    FLEETWATCH_API_MQTT_URL), else the login every part shares (FLEETWATCH_MQTT_URL)."""
    return MqttTarget.from_url(url) if url else shared


class Settings(BaseSettings):
    """Every setting Fleetwatch reads; see the README's Configuration table."""

    model_config = SettingsConfigDict(env_prefix="FLEETWATCH_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset starts an embedded PostgreSQL."
    )
    mqtt_url: str | None = Field(
        default=None, description="mqtt://user:pass@host:port; unset starts an embedded broker."
    )
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    topic_prefix: str = "fleet"
    data_dir: Path = Path(".fleetwatch")
    embedded_mqtt_port: int = 1884
    log_level: str = "INFO"

    ingest_client_id: str = Field(
        default="",
        description="The ingest's MQTT client id (its persistent session, its tick topic, its "
        "ingest_status row); empty: its login's name in FLEETWATCH_MQTT_URL, which is what a "
        "broker with use_username_as_clientid (deploy/) calls it anyway, or "
        "fleetwatch-ingest-1 without a login.",
    )
    ingest_shared_group: str = Field(
        default="",
        description="Shared-subscription group for several ingests splitting the load; "
        "empty (one ingest, or replicas that each store everything) subscribes without "
        "$share, which Mosquitto keeps across its own restart.",
    )
    ingest_hold_acks: bool = Field(
        default=True,
        description="Acknowledge each message only after its batch is committed.",
    )
    ingest_batch_size: int = 5000
    ingest_receive_maximum: int = Field(
        default=20_000,
        ge=1,
        le=65_535,
        description="MQTT 5 Receive Maximum of the ingest: how many messages the broker may "
        "hand over before the first is acknowledged, so what the ingest holds in memory "
        "(twice this across a reconnect, its old messages still to write). A few batches "
        "keep the database busy; more only costs memory while it works off a flood.",
    )
    ingest_flush_ms: int = 200
    ingest_max_payload_bytes: int = 4096
    ingest_clock_ahead_s: int = 300
    ingest_clock_behind_s: int = 7 * 24 * 3600
    # What one device's garbage may cost: rejected messages stored per device a minute (the
    # rest are counted in ingest_status.rejected_unkept_total), and for how long.
    ingest_rejected_per_device_per_minute: int = Field(default=10, ge=0)
    ingest_rejected_retention_days: int = Field(default=7, ge=1)

    heartbeat_retention_days: int = 30
    # auto: TimescaleDB when the server can load it, else plain PostgreSQL (with a log line
    # when it is installed but not loadable); postgres; timescaledb: stop if it cannot be had.
    database_flavour: Literal["auto", "postgres", "timescaledb"] = "auto"

    monitor_tick_s: float = 0.25
    monitor_will_grace_s: int = 20
    monitor_batch_limit: int = 20000
    # Shorter than the tightest deadline of a model (an alarm panel's), so that a blind
    # spot is declared before anyone would be declared offline.
    monitor_blind_after_s: int = 60
    monitor_resume_grace_s: int = 300
    # An ingest silent this long (not even its own ticks) no longer holds back the watermark.
    monitor_ingest_gone_s: int = 60
    monitor_flap_count: int = 3
    monitor_flap_window_s: int = 3600
    monitor_stable_after_s: int = 3600
    monitor_health_s: float = 10.0
    monitor_health_batch_limit: int = 2000
    monitor_health_min_interval_s: int = 60
    monitor_review_s: float = 5.0
    # How often the monitor adds the newest settled heartbeats to the release rollups.
    release_rollup_s: float = 60.0
    # When the weekly release-health digest goes to staff: ISO weekday (1 = Monday), UTC hour.
    release_digest_weekday: int = Field(default=1, ge=1, le=7)
    release_digest_hour: int = Field(default=8, ge=0, le=23)

    fleet_groups: str = Field(
        default="all,model,firmware,region",
        description="Groups watched for outages: all, model, firmware, region.",
    )
    fleet_min_devices: int = 20
    fleet_min_pct: float = 5.0
    fleet_window_s: int = 300
    fleet_hold_s: int = 600
    fleet_resolve_pct: float = 10.0
    fleet_sizes_refresh_s: int = 60
    # Site and parent correlation (monitor/sites.py): a site is silent when at least this
    # share of its devices (not behind a hub of the site) went silent together, and at
    # least site_min_devices of them; silent "together" allows this many seconds of slack
    # around each device's last heartbeat interval. A site with some devices back waits
    # site_settle_s for the rest before their own alerts go.
    site_min_pct: float = Field(default=75.0, gt=0, le=100)
    site_min_devices: int = Field(default=2, ge=2)
    site_slack_s: int = Field(default=5, ge=0)
    site_settle_s: int = Field(default=300, ge=0)

    alerts_workers: int = 8
    alerts_batch_size: int = 200
    alerts_poll_s: float = 0.1
    alerts_lease_s: int = 120
    alerts_max_attempts: int = 8
    alerts_backoff_s: float = 5.0
    alerts_backoff_max_s: float = 900.0
    # The router looks for new notices this often: an idle look is one index probe, and
    # every pass saved is time a customer does not wait.
    alerts_router_s: float = 0.05
    alerts_router_batch: int = 5000
    alerts_escalation_s: float = 5.0
    alerts_escalate_after_s: int = 900
    alerts_remind_every_s: int = 4 * 3600
    alerts_max_reminders: int = 3
    alerts_rate_limit_per_hour: int = 20
    # Alerts go to public addresses only. The networks named here (CIDR, comma-separated)
    # are allowed too: an SMTP relay or a webhook inside the operator's own network, the
    # demo's and the tests' sinks on 127.0.0.1. Empty: none.
    alerts_allowed_networks: str = ""

    campaigns_tick_s: float = 2.0
    campaigns_mqtt_url: str | None = Field(
        default=None,
        description="The campaign runner's own broker login; unset: FLEETWATCH_MQTT_URL's. "
        "For `serve` on a broker that ties sessions to logins (deploy/).",
    )
    # Where customers' links (a recall's acknowledgement) point: the API as they reach it.
    public_url: str = "http://127.0.0.1:8080"
    # How long a message's link (portal/links.py) opens the customer's page and takes their
    # answer: long enough for a message read late, short enough that an old mail forwarded
    # or left in a shared inbox stops acting on the device.
    portal_link_days: int = Field(default=30, ge=1, le=365)

    # The customer's page (portal/): a sign-in link works once, for this many minutes; the
    # session it opens lasts this many hours (sign out ends it sooner).
    portal_signin_minutes: int = Field(default=15, ge=1, le=24 * 60)
    portal_session_hours: int = Field(default=14 * 24, ge=1, le=90 * 24)
    # Sign-in links a person may ask for within an hour, per address and per customer
    # (more are refused silently: the answer never says, the log does).
    portal_signin_requests_per_hour: int = Field(default=5, ge=0, le=100)
    # A channel's verification code: how long it works, how many wrong answers end it, and
    # how many may be sent to one channel within an hour.
    portal_code_minutes: int = Field(default=15, ge=1, le=24 * 60)
    portal_code_tries: int = Field(default=5, ge=1, le=20)
    portal_codes_per_hour: int = Field(default=5, ge=1, le=100)

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_pool_size: int = 10
    api_summary_refresh_s: float = 5.0
    # A completed recall's links still show their page this long (campaigns/links.py): the
    # last owner's confirmation completes it, and their next look should thank them. A
    # cancelled recall's links stop at once.
    api_recall_link_grace_s: int = Field(default=86400, ge=0, le=30 * 86400)
    # Request bodies are counted as they arrive and refused (413) past this, before anything
    # reads or parses them, and so before the key is checked (api/limits.py).
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=0)
    # POST /api/v1/campaigns only, and only from an admin or firmware key: a target may
    # list up to 100,000 device ids (about 6.7 MB at 64 characters each).
    api_max_campaign_body_bytes: int = Field(default=8 * 1024 * 1024, ge=0)
    # Open event streams per API key, in each API process; one more is a 429 (api/feed.py).
    api_streams_per_key: int = Field(default=5, ge=1)
    # /readyz keeps what it found for this long: one broker login per period, not per call.
    api_ready_cache_s: float = Field(default=5.0, ge=0)
    # /metrics, /readyz, /docs and /openapi.json: unset, on the API's own port with a key of
    # a staff role (admin, staff or firmware); set, only on this port of api_ops_host,
    # without a key, and never on the API's port (api/ops.py).
    api_ops_port: int | None = Field(default=None, ge=1, le=65535)
    api_ops_host: str = "127.0.0.1"
    api_mqtt_url: str | None = Field(
        default=None,
        description="The login /readyz checks the broker with; unset: FLEETWATCH_MQTT_URL's. "
        "For `serve` on a broker that ties sessions to logins (deploy/).",
    )
    # A customer's own channels, and the test messages they may send to them an hour.
    api_channels_per_customer: int = Field(default=10, ge=0)
    api_channel_tests_per_hour: int = Field(default=5, ge=0)

    @field_validator("topic_prefix")
    @classmethod
    def _plain_prefix(cls, value: str) -> str:
        if not value or any(c in value for c in "+#$") or value.endswith("/"):
            raise ValueError("topic prefix must be a plain MQTT topic level without wildcards")
        return value

    @model_validator(mode="after")
    def _ops_port_of_its_own(self) -> Settings:
        if self.api_ops_port is not None and self.api_ops_port == self.api_port:
            raise ValueError("api_ops_port must differ from api_port")
        return self

    @model_validator(mode="after")
    def _ingest_batch_fits_in_flight(self) -> Settings:
        # A batch larger than what may be in flight never fills: each would wait for the
        # flush timer, and the ingest would crawl through any backlog.
        if self.ingest_receive_maximum < self.ingest_batch_size:
            raise ValueError(
                f"ingest_receive_maximum ({self.ingest_receive_maximum}) must be at least "
                f"ingest_batch_size ({self.ingest_batch_size})"
            )
        return self

    @model_validator(mode="after")
    def _ingest_client_id_from_login(self) -> Settings:
        if not self.ingest_client_id:
            try:
                target = self.mqtt_target()
            except ValueError:
                target = None  # reported where the URL is used
            login = target.username if target is not None else None
            self.ingest_client_id = login or DEFAULT_INGEST_CLIENT_ID
        return self

    @field_validator("alerts_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        _parse_networks(value)
        return value

    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The networks alerts may reach besides public addresses (alerts_allowed_networks)."""
        return _parse_networks(self.alerts_allowed_networks)

    def mqtt_target(self) -> MqttTarget | None:
        """The configured broker, or None when the embedded one is to be used."""
        return MqttTarget.from_url(self.mqtt_url) if self.mqtt_url else None


def _parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not a network (CIDR, like 10.20.0.0/16)") from None
    return tuple(networks)


@functools.cache
def get_settings() -> Settings:
    """Settings built once per process."""
    return Settings()
