"""Settings of the web console, from environment variables (docs/web-console.md).

The console reads the services' addresses and its own; the Kafka connection and the accepted
bearer tokens are the platform's own settings (``services.shared.settings.Settings``), so one
environment configures the services and the console alike."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

WEB_PORT = 8000


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OKR_", extra="ignore")

    http_host: str = "127.0.0.1"
    #: 0 means the console's default port, 8000 (the same variable as the services').
    http_port: int = 0
    goal_url: str = "http://127.0.0.1:8001"
    metrics_url: str = "http://127.0.0.1:8002"
    alignment_url: str = "http://127.0.0.1:8003"
    #: A session unused this long is forgotten: its user signs in again.
    session_idle_seconds: float = Field(default=8 * 3600, gt=0)
    #: Sessions kept at most; the least recently used go first beyond it.
    max_sessions: int = Field(default=10_000, ge=1)
    #: Mark cookies ``Secure`` (sent over HTTPS only): on behind a TLS-terminating proxy.
    cookie_secure: bool = False
    #: How long a call to a service may take before the page says it is unavailable.
    backend_timeout_seconds: float = Field(default=15.0, gt=0)

    @property
    def port(self) -> int:
        return self.http_port or WEB_PORT
