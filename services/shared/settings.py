"""Settings of a service process, from environment variables (docs/operations.md, Configuration)."""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.shared.auth import Tokens

#: A producer's batch compression, as aiokafka's ``compression_type`` names it.
Compression = Literal["gzip", "snappy", "lz4", "zstd"]

DEFAULT_PORTS = {"goal": 8001, "metrics": 8002, "alignment": 8003}


class Settings(BaseSettings):
    """Everything a service needs to know about where it runs.

    Unprefixed names are the conventional ones (``KAFKA_BOOTSTRAP_SERVERS``); the rest
    carry the ``OKR_`` prefix.
    """

    model_config = SettingsConfigDict(env_prefix="OKR_", extra="ignore")

    service: Literal["goal", "metrics", "alignment"] = "goal"
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    #: Passed to every Kafka client: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: Path | None = None
    #: Idempotent producers (no duplicates or reordering from retries). Turn off only for a
    #: cluster that refuses them (no IdempotentWrite permission, some dev brokers): consumers
    #: still apply each event once, by its log position.
    kafka_idempotence: bool = True
    #: Compression of every batch our producers send: none, gzip, snappy, lz4 or zstd. Less
    #: network and broker storage for a little client CPU; JSON events shrink several times.
    kafka_compression: Literal["none", Compression] = "zstd"
    #: For a broker that answers an empty fetch at once instead of holding it (noida-db, which
    #: ``make run`` sets this for): consumers wait this many seconds after an empty fetch
    #: (``services.shared.long_poll``). 0, for Apache Kafka: the broker does the waiting.
    kafka_empty_fetch_pause: float = Field(default=0.0, ge=0)

    data_dir: Path = Path("var/data")
    persistence: Literal["sqlite", "postgres"] = "sqlite"
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "postgres"
    postgres_password: SecretStr = SecretStr("")
    #: Database name: one per service, or one shared with a schema per service.
    postgres_dbname: str = "okr"
    #: Schema of this service's tables (created if missing); empty means the service name.
    postgres_schema: str = ""
    #: Encrypts stored events and snapshots (AES, eventsourcing's cipher) when set: a
    #: base64-encoded 16, 24 or 32-byte key. Keep it apart from the database and its backups.
    cipher_key: SecretStr | None = None

    http_host: str = "127.0.0.1"
    #: 0 means the service's default port (goal 8001, metrics 8002, alignment 8003).
    http_port: int = 0

    outbox_batch_size: int = Field(default=2000, ge=1)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    #: How often an idle outbox relay compares the last message of each partition of its
    #: topic with what it published, and republishes what the broker lost.
    outbox_tail_check_seconds: float = Field(default=30.0, gt=0)
    #: Records per consumed batch. Large batches are cheap per record: the alignment service
    #: stores one evaluation per key result per batch, whatever the readings in it.
    consumer_max_records: int = Field(default=10000, ge=1)
    #: While records come, a consumer's fetch asks the broker for this many bytes at least,
    #: and to wait up to ``consumer_fetch_wait_seconds`` for them: under a steady trickle the
    #: broker gathers a batch instead of answering each record alone. The wait bounds what
    #: it adds to latency per hop (an idle consumer asks otherwise: ``kafka_seams``; the
    #: measurements behind the values: docs/benchmarks.md).
    consumer_fetch_min_bytes: int = Field(default=256 * 1024, ge=1)
    consumer_fetch_wait_seconds: float = Field(default=0.05, gt=0)
    #: The same wait for the goal service's consumer of scores: they are noted for display,
    #: on no latency path, and each objective is noted once per batch however many of its
    #: scores the batch holds, so fewer and larger batches cost less.
    goal_notes_fetch_wait_seconds: float = Field(default=0.5, gt=0)
    #: A KPI unhealthy this long without meaningful change is stagnant (ISO-8601 or seconds).
    stagnation_window: timedelta = timedelta(days=14)
    #: "Meaningful change": a move of at least this fraction of the KPI's warning-to-target gap.
    stagnation_tolerance: float = Field(default=0.05, ge=0)
    #: How often the alignment service re-evaluates statuses that change as time passes.
    reevaluate_seconds: float = Field(default=60.0, gt=0)
    #: The alignment service settles gaps (over every objective and KPI) after a batch at
    #: most this often, and on this period for the batches in between; 0: after every batch.
    #: A batch that sets or archives objectives settles them at once.
    gap_settle_seconds: float = Field(default=1.0, ge=0)
    #: Kafka consumer group; empty means ``okr-<service>``. Instances of one service share it.
    kafka_consumer_group: str = ""
    #: Stable name of this instance (default: the host name). It makes consumers static group
    #: members (KIP-345): a restarted instance takes its partitions back at once instead of
    #: waiting for the broker to expire its dead predecessor. Unique per running instance.
    instance_id: str = Field(default_factory=socket.gethostname)

    #: The accepted bearer tokens: a JSON list of {"name", "roles", "sha256"} entries (make
    #: one with ``okr-token NAME ROLE...``), inline or in the file ``auth_tokens_file`` names.
    auth_tokens: str = ""
    auth_tokens_file: Path | None = None
    #: Serve without authentication: only on a closed network (tests, a laptop).
    auth_disabled: bool = False

    @field_validator("cipher_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
        # Compose passes the variable through even when .env leaves it empty.
        return None if value == "" else value

    def tokens(self) -> Tokens | None:
        """The accepted tokens; None when authentication is disabled. A service configured
        with neither tokens nor ``auth_disabled`` refuses to start rather than run open."""
        if self.auth_disabled:
            return None
        text = self.auth_tokens or (
            self.auth_tokens_file.read_text() if self.auth_tokens_file else ""
        )
        tokens = Tokens.parse(text) if text.strip() else Tokens([])
        if not tokens:
            raise ValueError(
                "no bearer tokens configured: set OKR_AUTH_TOKENS or OKR_AUTH_TOKENS_FILE "
                "(okr-token NAME ROLE... makes one), or OKR_AUTH_DISABLED=true on a closed network"
            )
        return tokens

    @property
    def port(self) -> int:
        return self.http_port or DEFAULT_PORTS[self.service]

    @property
    def consumer_group(self) -> str:
        return self.kafka_consumer_group or f"okr-{self.service}"

    def group_instance_id(self, topics: Sequence[str]) -> str:
        """Static membership id of this instance's consumer of ``topics`` (each subscription
        is its own group member). Kafka allows only letters, digits, '.', '_' and '-'."""
        name = f"{self.consumer_group}-{'-'.join(topics)}-{self.instance_id}"
        return re.sub(r"[^A-Za-z0-9._-]", "_", name)

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection options for plain aiokafka clients (admin, tail readers)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = self.kafka_ssl_context()
        if self.kafka_sasl_mechanism:
            options |= {
                "sasl_mechanism": self.kafka_sasl_mechanism,
                "sasl_plain_username": self.kafka_sasl_username,
                "sasl_plain_password": self.kafka_sasl_password,
            }
        return options

    def kafka_compression_type(self) -> Compression | None:
        """The producers' ``compression_type`` (aiokafka's None for no compression)."""
        return None if self.kafka_compression == "none" else self.kafka_compression

    def kafka_ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(
            cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
        )

    def kafka_security(self) -> BaseSecurity | None:
        """The same settings in FastStream's terms, for the service's broker."""
        use_ssl = self.kafka_security_protocol in ("SSL", "SASL_SSL")
        context = self.kafka_ssl_context() if use_ssl else None
        mechanism = (self.kafka_sasl_mechanism or "").upper()
        username, password = self.kafka_sasl_username or "", self.kafka_sasl_password or ""
        if mechanism == "PLAIN":
            return SASLPlaintext(username, password, ssl_context=context)
        if mechanism == "SCRAM-SHA-256":
            return SASLScram256(username, password, ssl_context=context)
        if mechanism == "SCRAM-SHA-512":
            return SASLScram512(username, password, ssl_context=context)
        if mechanism:
            raise ValueError(f"unsupported OKR_KAFKA_SASL_MECHANISM {mechanism!r}")
        return BaseSecurity(ssl_context=context) if context else None
