"""Typed settings of the online feature store connection (Redis or ElastiCache).

Read once at the edge (service start, ``approvals materialize``) from arguments or from the
environment (``APPROVALS_REDIS_URL``, ``APPROVALS_REDIS_PASSWORD``, ...) and passed down.
The AUTH token is a :class:`~pydantic.SecretStr`: it never appears in a repr, a log line or
an error message, and a URL that carries a password is refused so it cannot leak that way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SCHEMES = ("redis", "rediss")


class RedisSettings(BaseSettings):
    """Where the online features live and how hard to try reaching them.

    Attributes:
        url: ``redis://host:port/db`` or ``rediss://...`` (TLS, e.g. ElastiCache in-transit
            encryption). A user name is allowed; a password is not (use ``password``).
        password: AUTH token (env ``APPROVALS_REDIS_PASSWORD``).
        timeout_ms: socket timeout of one read; a slower Redis counts as a failure.
        connect_timeout_ms: time allowed to open a connection.
        prefix: first part of every key, so several deployments can share one Redis.
        failure_threshold: consecutive failures that open the circuit breaker.
        cooldown_s: how long an open breaker skips Redis before one probe request.
        ssl_ca_certs: CA bundle for ``rediss://`` (system store when absent).
        cache_keys: parsed hashes of shared keys (BIN, route, merchant, ...; not cards) kept
            in process for the live materialized version, which never changes once written;
            0 turns the cache off.
    """

    # hide_input_in_errors: a rejected URL may carry a password; errors must not echo it.
    model_config = SettingsConfigDict(
        env_prefix="APPROVALS_REDIS_", frozen=True, extra="forbid", hide_input_in_errors=True
    )

    url: str = "redis://127.0.0.1:6379/0"
    password: SecretStr | None = None
    timeout_ms: int = Field(default=20, gt=0, le=60_000)
    connect_timeout_ms: int = Field(default=200, gt=0, le=60_000)
    prefix: str = Field(default="approvals", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    failure_threshold: int = Field(default=5, ge=1, le=1000)
    cooldown_s: float = Field(default=5.0, gt=0, le=3600)
    ssl_ca_certs: Path | None = None
    cache_keys: int = Field(default=50_000, ge=0, le=10_000_000)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in SCHEMES:
            raise ValueError(f"scheme must be redis:// or rediss:// (got {parts.scheme!r}://)")
        if not parts.hostname:
            raise ValueError("URL has no host")
        if parts.password:
            raise ValueError("URL must not carry a password: set APPROVALS_REDIS_PASSWORD")
        return value.strip()

    @property
    def tls(self) -> bool:
        """True when the connection is encrypted (``rediss://``)."""
        return self.url.startswith("rediss://")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url`` (sync or asyncio), secret included.

        The result holds the password in clear text: pass it to the client, never log it.
        """
        options: dict[str, Any] = {
            "socket_timeout": self.timeout_ms / 1000,
            "socket_connect_timeout": self.connect_timeout_ms / 1000,
            "decode_responses": False,
        }
        if self.password is not None:
            options["password"] = self.password.get_secret_value()
        if self.tls and self.ssl_ca_certs is not None:
            options["ssl_ca_certs"] = str(self.ssl_ca_certs)
        return options
