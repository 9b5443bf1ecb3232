"""Where notifications go: a webhook (HTTP POST of a JSON body) and email (SMTP, plain text), and
the per-client configuration in ``<home>/notifications.yaml``::

    acme:
      events: [ERRORED, LATE, COMPLETED_AFTER_ERRORS]   # default: all three
      webhook: {url: "https://hooks.example.com/billing", timeout_s: 5}
      email: {smtp_host: smtp.example.com, smtp_port: 587, sender: ops@acme.test,
              to: [billing@acme.test], starttls: true,
              username_env: ACME_SMTP_USER, password_env: ACME_SMTP_PASSWORD}

Secrets are never in the file: only the names of the environment variables that hold them.
Sending returns one line (the HTTP status, the SMTP reply) or raises ``DeliveryFailed`` with one.

``starttls: true`` sends nothing, not even the credentials, unless the server offers STARTTLS and
its certificate verifies (chain and host name) against the system's CAs; a relay with a private
CA is trusted through OpenSSL's standard ``SSL_CERT_FILE`` (a PEM bundle; ``SSL_CERT_DIR`` for a
hashed directory) in the environment of the process that sends.
"""
from __future__ import annotations

import json
import os
import re
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator, \
    model_validator

from .yaml_files import read_mapping
from .errors import InvalidConfig

__all__ = [
    "NOTIFICATIONS_FILE",
    "EVENTS",
    "Webhook",
    "Email",
    "ClientNotifications",
    "DeliveryFailed",
    "load_notifications",
    "send_webhook",
    "send_email",
]

NOTIFICATIONS_FILE = "notifications.yaml"
EVENTS = ("ERRORED", "LATE", "COMPLETED_AFTER_ERRORS")
_CLIENT = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_ADDRESS = re.compile(r"^[^@\s<>,;\"]{1,64}@[^@\s<>,;\"]{1,255}$")


class DeliveryFailed(Exception):
    """A message that did not go out; the text is one line saying why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Webhook(_Strict):
    url: str = Field(min_length=1, max_length=2000)
    timeout_s: float = Field(default=5, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("no credentials in the URL: this file holds no secrets")
        if any(c.isspace() for c in value):
            raise ValueError("the URL contains white space")
        return value

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return _not_bool(value)


# Hosts a relay without STARTTLS may be given credentials on: the connection never leaves the machine.
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


class Email(_Strict):
    smtp_host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.:\[\]_-]+$")
    smtp_port: StrictInt = Field(default=25, ge=1, le=65535)
    sender: str
    to: list[str] = Field(min_length=1, max_length=100)
    starttls: StrictBool = False
    username_env: str | None = Field(default=None, pattern=_ENV_NAME)
    password_env: str | None = Field(default=None, pattern=_ENV_NAME)
    timeout_s: float = Field(default=10, gt=0, le=60)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return _address(value)

    @field_validator("to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return [_address(v) for v in value]

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return _not_bool(value)

    @model_validator(mode="after")
    def _both_or_neither(self) -> "Email":
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("give username_env and password_env together (names of environment variables)")
        if self.username_env is not None and not self.starttls and self.smtp_host.strip("[]") not in _LOOPBACK:
            raise ValueError("SMTP credentials need starttls: true (they are never sent in the clear), "
                             "unless smtp_host is this machine (localhost, 127.0.0.1, ::1)")
        return self


class ClientNotifications(_Strict):
    """One client's notifications: which events, to which channels."""

    events: list[Literal["ERRORED", "LATE", "COMPLETED_AFTER_ERRORS"]] = Field(
        default_factory=lambda: list(EVENTS), min_length=1)
    webhook: Webhook | None = None
    email: Email | None = None

    def targets(self) -> list[tuple[str, str]]:
        """(channel, target) of every configured channel: the webhook's URL, the email recipients."""
        out = []
        if self.webhook is not None:
            out.append(("webhook", self.webhook.url))
        if self.email is not None:
            out.append(("email", ", ".join(self.email.to)))
        return out


def load_notifications(home: str | Path) -> dict[str, ClientNotifications]:
    """Every client's notifications from ``<home>/notifications.yaml``; {} when there is no file."""
    path = Path(home) / NOTIFICATIONS_FILE
    if not path.exists():
        return {}
    source = str(path)
    data = read_mapping(path, "a mapping of client -> events, webhook, email")
    out = {}
    for client, entry in data.items():
        if not isinstance(client, str) or not re.match(_CLIENT, client):
            raise InvalidConfig(source, str(client), "not a valid client name (lowercase letters, digits, - _ .)")
        try:
            out[client] = ClientNotifications.model_validate(entry if entry is not None else {})
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join([client, *(str(p) for p in err["loc"])])
            raise InvalidConfig(source, field, err["msg"].removeprefix("Value error, ")) from None
    return out


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true or false")
    return value


def _address(value: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an email address (name@domain)")
    return value


# ------------------------------------------------------------------ sending
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is a failure to see, not to follow (urllib would turn the POST into a GET)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102, ANN001
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def send_webhook(webhook: Webhook, body: dict[str, Any]) -> str:
    """POST the body as JSON; the response status on a 2xx, else DeliveryFailed."""
    data = json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")
    request = urllib.request.Request(webhook.url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "allegro-ops"})
    try:
        with _OPENER.open(request, timeout=webhook.timeout_s) as response:
            status, reason = response.status, response.reason
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"HTTP {exc.code} {_line(exc.reason)}".strip()) from None
    except urllib.error.URLError as exc:
        raise DeliveryFailed(_why(exc.reason, webhook.timeout_s)) from None
    except (OSError, ValueError) as exc:
        raise DeliveryFailed(_why(exc, webhook.timeout_s)) from None
    if not 200 <= status < 300:
        raise DeliveryFailed(f"HTTP {status} {_line(reason)}".strip())
    return f"HTTP {status}"


def send_email(email: Email, subject: str, text: str, headers: dict[str, str] | None = None) -> str:
    """Send one plain-text message to the recipients; the server's reply, else DeliveryFailed."""
    credentials = None
    if email.username_env:
        user, password = os.environ.get(email.username_env), os.environ.get(email.password_env or "")
        missing = [n for n, v in ((email.username_env, user), (email.password_env, password)) if not v]
        if missing:
            raise DeliveryFailed(f"environment variable {missing[0]} is not set (SMTP credentials)")
        credentials = (user, password)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = email.sender
    message["To"] = ", ".join(email.to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=email.sender.rsplit("@", 1)[1])
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    try:
        with smtplib.SMTP(email.smtp_host, email.smtp_port, timeout=email.timeout_s) as smtp:
            if email.starttls:
                _start_tls(smtp, email)
            if credentials:
                smtp.login(*credentials)
            refused = smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryFailed(f"every recipient refused: {', '.join(sorted(exc.recipients))}") from None
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryFailed(_untrusted(email, exc)) from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryFailed(f"SMTP {exc.smtp_code} {_line(exc.smtp_error)}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(_why(exc, email.timeout_s)) from None
    accepted = len(email.to) - len(refused)
    detail = f"SMTP accepted for {accepted} recipient(s)"
    return detail + (f"; refused: {', '.join(sorted(refused))}" if refused else "")


def _start_tls(smtp: smtplib.SMTP, email: Email) -> None:
    """Switch to TLS or refuse: never go on in the clear when the config asks for STARTTLS."""
    smtp.ehlo()
    if not smtp.has_extn("starttls"):
        raise DeliveryFailed(f"{_server(email)} does not offer STARTTLS (the config asks for starttls): "
                             "nothing sent")
    smtp.starttls(context=ssl.create_default_context())


def _untrusted(email: Email, exc: ssl.SSLCertVerificationError) -> str:
    why = _line(exc.verify_message or exc.reason or "unknown reason").rstrip(".")
    # 18-21: self-signed, or no CA at hand for the issuer; the other codes (a host name the
    # certificate does not name, an expired one, ...) are not fixed by trusting a CA
    hint = " (a private CA: name its PEM file in SSL_CERT_FILE)" if exc.verify_code in (18, 19, 20, 21) else ""
    return f"STARTTLS to {_server(email)}: certificate verify failed: {why}{hint}"


def _server(email: Email) -> str:
    return f"SMTP server {email.smtp_host}:{email.smtp_port}"


def _why(reason: Any, timeout: float) -> str:
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout:g}s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, BaseException):
        text = _line(str(reason)) or type(reason).__name__
        return text if text.startswith(type(reason).__name__) else f"{type(reason).__name__}: {text}"
    return _line(reason)


def _line(value: Any, limit: int = 300) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
