"""The `[web]` section of collector.toml: where the guard-post page listens and who may log in."""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator, model_validator

from broker.i18n import DEFAULT as DEFAULT_LANGUAGE
from broker.i18n import Language
from kernel.config import Strict
from protocol.ids import check_id

PUBLIC_URL = re.compile(r"https?://[^\s/?#@]+(/[^\s?#]*)?")
ALL_SITES = "*"
"""An operator's `sites = ["*"]`: every site the collector knows."""

LoginName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,23}$")]
FullName = Annotated[
    str, StringConstraints(pattern=r"^\S(?:[^\x00-\x1f\x7f]{0,34}\S)?$", strip_whitespace=True)
]


class Role(StrEnum):
    """guard: watches and acknowledges its own sites; operator: the control room."""

    GUARD = "guard"
    OPERATOR = "operator"


class Account(Strict):
    """A person who may log in to the page."""

    name: LoginName = Field(description="login name: lowercase letters, digits, '.', '_', '-'")
    full_name: FullName | None = Field(
        default=None, description="shown on the page and recorded with each acknowledgement"
    )
    role: Role = Field(description="guard (its own sites) or operator (control room)")
    sites: tuple[str, ...] = Field(
        default=(), description='site ids this account sees and acknowledges; "*" for all'
    )
    password_hash: str = Field(
        description="argon2 hash from `jaga-collector web hash-password`, never the password"
    )
    language: Language = Field(
        default=DEFAULT_LANGUAGE,
        description='the page\'s language: "id" (Bahasa Indonesia) or "en" (English); the '
        "page's switch changes it for one browser session",
    )

    @model_validator(mode="after")
    def _check(self) -> Account:
        if not self.password_hash.startswith("$argon2"):
            raise ValueError(
                f"account {self.name!r}: password_hash must be an argon2 hash "
                "(make one with `jaga-collector web hash-password`)"
            )
        for site in self.sites:
            if site != ALL_SITES:
                check_id(site, "site")
        if self.role is Role.GUARD and (not self.sites or ALL_SITES in self.sites):
            raise ValueError(
                f"account {self.name!r}: a guard must list its own sites, e.g. "
                'sites = ["bangka-barat"] ("*" is for operators)'
            )
        return self

    @property
    def all_sites(self) -> bool:
        return self.role is Role.OPERATOR and (not self.sites or ALL_SITES in self.sites)

    def can_see(self, site: str) -> bool:
        """Whether this account may see (and acknowledge) what happens at site."""
        return self.all_sites or site in self.sites

    def can_operate(self, site: str) -> bool:
        """Whether this account may arm, disarm and bypass at site: an operator who sees it."""
        return self.role is Role.OPERATOR and self.can_see(site)

    @property
    def who(self) -> str:
        """The name carried into the alert lifecycle: `Full Name (login)`, at most 63 chars."""
        return f"{self.full_name} ({self.name})" if self.full_name else self.name


class WebTls(Strict):
    cert: Path = Field(description="server certificate (PEM) from the site CA, e.g. broker's")
    key: Path = Field(description="its private key (PEM)")


class WebConfig(Strict):
    """The guard-post page; absent from collector.toml means no page."""

    bind: str = Field(
        default="127.0.0.1:8080",
        description="host:port to listen on ([::1]:8080 for IPv6); loopback unless you say so",
    )
    accounts: tuple[Account, ...] = Field(
        min_length=1, description="who may log in; there is no anonymous access"
    )
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 7, description="a login lasts this long (a guard's shift)"
    )
    tls: WebTls | None = Field(default=None, description="serve HTTPS with this certificate")
    public_url: str | None = Field(
        default=None,
        description="the page's address as the guards' phones reach it, e.g. "
        "https://pos.bangka-barat.example:8443; notifications link to each alert under it "
        "(default: from bind, if that names an address and a port)",
    )
    allow_plain_http: bool = Field(
        default=False,
        description="serve plain HTTP on a non-loopback address (passwords cross the LAN in clear)",
    )
    login_max_failures: int = Field(
        default=5, ge=1, le=100, description="wrong passwords per account or address before a pause"
    )
    login_lockout_s: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="window they count in; the pause ends as the oldest of them ages out",
    )
    secret_file: Path | None = Field(
        default=None,
        description="key that signs session cookies (made 0600 if absent); "
        "default <data_dir>/web-session.key",
    )
    max_connections: int = Field(
        default=128,
        ge=4,
        le=2048,
        description="connections the page holds open at once; more are closed as they arrive, "
        "so the page never takes the file descriptors storage needs (LimitNOFILE=8192)",
    )
    max_connections_per_address: int = Field(
        default=32,
        ge=1,
        le=2048,
        description="of those, how many one address (an IPv6 /64) may hold, so one noisy "
        "laptop on the post's LAN cannot take the page from the guard's screen",
    )
    request_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="a connection must deliver a whole request (TLS handshake, headers, body) "
        "within this long of connecting or of its first byte, or it is closed",
    )
    login_concurrency: int = Field(
        default=2,
        ge=1,
        le=16,
        description="password checks run at once (argon2, 64 MiB each); logins beyond it "
        "are told to try again in a moment",
    )
    live_fps: float = Field(
        default=2.0,
        ge=0.2,
        le=5.0,
        description="frames per second of each camera on the wall (the units' low-res stream)",
    )
    live_site_uplink_kbit_s: int | None = Field(
        default=None,
        ge=16,
        description="most a site's live frames may take of its uplink (kbit/s); the frame rate "
        "drops to stay under it (a rural site's link is often 4G); none: no limit",
    )
    live_max_viewers: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="open live streams at most (each is also one of max_connections)",
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not PUBLIC_URL.fullmatch(value):
            raise ValueError(
                f"public_url {value!r} is not an address a phone can open: write "
                "https://host[:port][/path], e.g. https://pos.bangka-barat.example:8443"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> WebConfig:
        host, _ = split_bind(self.bind)
        names = [a.name for a in self.accounts]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"accounts: {', '.join(twice)} listed more than once")
        if self.max_connections_per_address > self.max_connections:
            raise ValueError(
                f"max_connections_per_address ({self.max_connections_per_address}) cannot be "
                f"above max_connections ({self.max_connections}): lower it or raise the total"
            )
        if self.tls is None and not self.allow_plain_http and not is_loopback(host):
            raise ValueError(
                f"bind {self.bind!r} is not a loopback address: configure [web.tls] "
                "(the site CA's server certificate) or set allow_plain_http = true"
            )
        return self

    @property
    def host(self) -> str:
        return split_bind(self.bind)[0]

    @property
    def port(self) -> int:
        return split_bind(self.bind)[1]

    @property
    def page_url(self) -> str | None:
        """Where notifications link to: public_url, else this page's own bind address (None
        when that is a wildcard or a port chosen at start)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host, port = split_bind(self.bind)
        if port == 0 or host in ("0.0.0.0", "::"):
            return None
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    @property
    def session_s(self) -> float:
        return self.session_hours * 3600

    def account(self, name: str) -> Account | None:
        return next((a for a in self.accounts if a.name == name), None)

    def resolved(self, base: Path) -> WebConfig:
        """Relative paths taken from the config file's folder, as load_config does for mqtt.tls."""

        def fix(p: Path) -> Path:
            return p if p.is_absolute() else base / p

        update: dict[str, object] = {}
        if self.tls is not None:
            update["tls"] = WebTls(cert=fix(self.tls.cert), key=fix(self.tls.key))
        if self.secret_file is not None:
            update["secret_file"] = fix(self.secret_file)
        return self.model_copy(update=update)


def split_bind(bind: str) -> tuple[str, int]:
    """'127.0.0.1:8080' or '[::1]:8080' -> (host, port; 0 = any free port); ValueError if not."""
    hint = "use host:port, e.g. 127.0.0.1:8080 or [::1]:8080"
    if bind.startswith("["):
        host, sep, rest = bind[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bind {bind!r}: {hint}")
        port_text = rest[1:]
    else:
        host, sep, port_text = bind.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"bind {bind!r}: {hint}")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bind {bind!r}: {hint}")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
