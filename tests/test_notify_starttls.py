"""Email notifications over STARTTLS against a real SMTP server (aiosmtpd, in a thread on 127.0.0.1)
with a throwaway CA made here: the message goes out only inside TLS, to a server whose certificate
the client trusts (the private CA through the standard SSL_CERT_FILE), with AUTH from the
environment; an untrusted certificate or a server without STARTTLS is a one-line failed delivery,
settled ``failed``, audited, not retried by the next run, and nothing (no credentials, no message)
crosses in the clear.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import ssl
import subprocess
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from allegro_ops import ExecutionStatus, Workspace
from allegro_ops.notify import check_due, notifications
from allegro_ops.notify_channels import DeliveryFailed, Email, send_email

from conftest import init_small_demo

C, S, DAY = "acme", "daily-billing", "2026-11-24"
USER, PASSWORD = "acme-ops", "s3cret-Pa55"
TO = ["billing@acme.test", "ops-lead@acme.test"]


# ------------------------------------------------------------------ a throwaway PKI
@dataclass(frozen=True)
class Pki:
    ca_file: Path  # the CA the client trusts (SSL_CERT_FILE)
    good: tuple[Path, Path]  # cert, key: 127.0.0.1 and localhost, signed by that CA
    stranger: tuple[Path, Path]  # 127.0.0.1, signed by a CA nobody trusts
    wrong_name: tuple[Path, Path]  # signed by the trusted CA, for mail.acme.test only


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _server_cert(ca: x509.Certificate, ca_key, names: list[x509.GeneralName], out: Path,
                 now: dt.datetime) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("allegro-ops test SMTP")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_file, key_file = out.with_suffix(".crt"), out.with_suffix(".key")
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    out = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.timezone.utc)  # certificates are checked against the real time
    ca, ca_key = _ca("allegro-ops test CA", now)
    other, other_key = _ca("a CA nobody trusts", now)
    (out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    local = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    return Pki(out / "ca.pem", _server_cert(ca, ca_key, local, out / "good", now),
               _server_cert(other, other_key, local, out / "stranger", now),
               _server_cert(ca, ca_key, [x509.DNSName("mail.acme.test")], out / "wrong-name", now))


@pytest.fixture(autouse=True)
def trust_the_test_ca(pki, monkeypatch):
    """The client trusts the test CA (and only it) through the standard OpenSSL variable."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


# ------------------------------------------------------------------ a real SMTP server
@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: str | None  # the TLS version the message came in under; None in the clear
    login: str | None

    @property
    def text(self) -> str:
        return self.message.get_content().replace("\r\n", "\n")


@dataclass
class Recorder:
    """An aiosmtpd handler and authenticator that records what reached the server."""

    messages: list[Mail] = field(default_factory=list)
    logins: list[tuple[str, str, str | None]] = field(default_factory=list)  # (user, password, TLS version)
    commands: list[str] = field(default_factory=list)  # MAIL / RCPT / DATA, whether accepted or not

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        user, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((user, password, _tls(session)))
        ok = (user, password) == (USER, PASSWORD)
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    async def handle_MAIL(self, server, session, envelope, address, options) -> str:  # noqa: N802 - aiosmtpd hook
        self.commands.append("MAIL")
        envelope.mail_from, envelope.mail_options = address, options
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options) -> str:  # noqa: N802
        self.commands.append("RCPT")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
        self.commands.append("DATA")
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message, _tls(session),
                                  session.auth_data))
        return "250 OK queued"


def _tls(session) -> str | None:
    return session.ssl["ssl_object"].version() if session.ssl else None


class _Controller(Controller):
    """Listens on a free port the OS picks (Controller wants one given)."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpServer:
    """``with SmtpServer(cert=...) as smtp``: STARTTLS (required before MAIL) and AUTH PLAIN/LOGIN
    after it with that certificate; ``cert=None``: a server that offers no STARTTLS and would
    take AUTH and mail in the clear."""

    def __init__(self, cert: tuple[Path, Path] | None, auth_required: bool = False) -> None:
        self.record = Recorder()
        options: dict[str, Any] = {"authenticator": self.record, "auth_required": auth_required}
        if cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*map(str, cert))
            options |= {"tls_context": context, "require_starttls": True}
        else:
            options |= {"auth_require_tls": False}
        self._controller = _Controller(self.record, hostname="127.0.0.1", port=0, ready_timeout=10, **options)

    @property
    def port(self) -> int:
        return self._controller.port

    def __enter__(self) -> "SmtpServer":
        self._controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._controller.stop()


def config(port: int, **extra: Any) -> Email:
    return Email(**{"smtp_host": "127.0.0.1", "smtp_port": port, "sender": "ops@acme.test", "to": TO,
                    "starttls": True, "timeout_s": 5, **extra})


def credentials(monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("ACME_SMTP_USER", USER)
    monkeypatch.setenv("ACME_SMTP_PASSWORD", PASSWORD)
    return {"username_env": "ACME_SMTP_USER", "password_env": "ACME_SMTP_PASSWORD"}


# ------------------------------------------------------------------ sending
def test_the_message_arrives_inside_tls_with_its_sender_recipients_subject_and_body(pki):
    with SmtpServer(pki.good) as smtp:
        reply = send_email(config(smtp.port), "[allegro-ops] ERRORED acme/daily-billing 2026-11-24",
                           "ERRORED: job schedule acme/daily-billing\nstatus:   ERRORED\n",
                           {"X-Allegro-Ops-Event": "ERRORED"})
    assert reply == "SMTP accepted for 2 recipient(s)"
    (mail,) = smtp.record.messages
    assert mail.tls in ("TLSv1.2", "TLSv1.3") and mail.login is None
    assert mail.sender == "ops@acme.test" and mail.recipients == TO
    assert mail.message["Subject"] == "[allegro-ops] ERRORED acme/daily-billing 2026-11-24"
    assert mail.message["From"] == "ops@acme.test" and mail.message["To"] == ", ".join(TO)
    assert mail.message["X-Allegro-Ops-Event"] == "ERRORED"
    assert mail.text == "ERRORED: job schedule acme/daily-billing\nstatus:   ERRORED\n"


def test_auth_uses_the_credentials_from_the_environment_and_only_inside_tls(pki, monkeypatch):
    with SmtpServer(pki.good, auth_required=True) as smtp:
        assert send_email(config(smtp.port, **credentials(monkeypatch)), "s", "t") == \
            "SMTP accepted for 2 recipient(s)"
    (user, password, tls) = smtp.record.logins[0]
    assert (user, password) == (USER, PASSWORD) and tls in ("TLSv1.2", "TLSv1.3")
    (mail,) = smtp.record.messages
    assert mail.login == USER and mail.tls == tls


def test_wrong_credentials_fail_in_one_line_without_the_password(pki, monkeypatch):
    names = credentials(monkeypatch)
    monkeypatch.setenv("ACME_SMTP_PASSWORD", "not-the-password")
    with SmtpServer(pki.good, auth_required=True) as smtp:
        with pytest.raises(DeliveryFailed) as caught:
            send_email(config(smtp.port, **names), "s", "t")
    assert str(caught.value).startswith("SMTP 535 ") and "\n" not in str(caught.value)
    assert "not-the-password" not in str(caught.value) and smtp.record.messages == []


@pytest.mark.parametrize("which, why", [
    ("stranger", "unable to get local issuer certificate (a private CA: name its PEM file in SSL_CERT_FILE)"),
    ("wrong_name", "IP address mismatch, certificate is not valid for '127.0.0.1'"),
])
def test_a_certificate_the_client_cannot_trust_sends_nothing(pki, monkeypatch, which, why):
    with SmtpServer(getattr(pki, which)) as smtp:
        with pytest.raises(DeliveryFailed) as caught:
            send_email(config(smtp.port, **credentials(monkeypatch)), "s", "t")
    assert str(caught.value) == f"STARTTLS to SMTP server 127.0.0.1:{smtp.port}: certificate verify failed: {why}"
    assert smtp.record.logins == [] and smtp.record.commands == [] and smtp.record.messages == []


def test_a_server_without_starttls_is_refused_and_nothing_crosses_in_the_clear(monkeypatch):
    with SmtpServer(None) as smtp:
        with pytest.raises(DeliveryFailed) as caught:
            send_email(config(smtp.port, **credentials(monkeypatch)), "s", "t")
        plain = send_email(config(smtp.port, starttls=False), "s", "t")  # the same server does take mail
    assert str(caught.value) == (f"SMTP server 127.0.0.1:{smtp.port} does not offer STARTTLS (the config asks "
                                 "for starttls): nothing sent")
    assert plain == "SMTP accepted for 2 recipient(s)"
    assert smtp.record.logins == [] and [m.tls for m in smtp.record.messages] == [None]


# ------------------------------------------------------------------ as a notice
@pytest.fixture
def ws(prepared) -> Workspace:
    return prepared("notify-starttls", init_small_demo)


def configure(ws: Workspace, port: int, **email_extra: Any) -> None:
    entry = {"email": {"smtp_host": "127.0.0.1", "smtp_port": port, "sender": "ops@acme.test", "to": TO,
                       "starttls": True, "timeout_s": 5, **email_extra}}
    (ws.home / "notifications.yaml").write_text(yaml.safe_dump({C: entry}))


def test_an_errored_run_notifies_by_email_over_starttls(ws, pki, monkeypatch):
    with SmtpServer(pki.good, auth_required=True) as smtp:
        configure(ws, smtp.port, **credentials(monkeypatch))
        ws.create(C, S, DAY)
        assert ws.process(C, S, DAY).status is ExecutionStatus.ERRORED
    (mail,) = smtp.record.messages
    assert mail.tls is not None and mail.login == USER
    assert mail.message["Subject"] == f"[allegro-ops] ERRORED {C}/{S} {DAY}"
    assert mail.text.startswith(f"ERRORED: job schedule {C}/{S}, run date {DAY}\n")
    assert [(d.event, d.channel, d.outcome, d.detail) for d in notifications(ws)] == [
        ("ERRORED", "email", "sent", "SMTP accepted for 2 recipient(s)")]


def test_an_untrusted_server_is_a_failed_audited_notice_not_retried_by_the_next_run(ws, pki, monkeypatch, cli_cmd,
                                                                                   cli_env, tmp_path):
    names = credentials(monkeypatch)
    with SmtpServer(pki.stranger) as smtp:
        configure(ws, smtp.port, **names)
        ws.create(C, S, DAY)
        assert ws.process(C, S, DAY).status is ExecutionStatus.ERRORED  # the action itself succeeds
        (failed,) = notifications(ws)
        assert (failed.event, failed.channel, failed.outcome) == ("ERRORED", "email", "failed")
        assert failed.detail == (f"STARTTLS to SMTP server 127.0.0.1:{smtp.port}: certificate verify failed: "
                                 "unable to get local issuer certificate (a private CA: name its PEM file in "
                                 "SSL_CERT_FILE)")
        (entry,) = [a for a in ws.audit() if a.action == "notify"]
        assert (entry.target, entry.outcome, entry.reason) == (
            f"{C}/{S} {DAY} ERRORED -> email {', '.join(TO)}", "failed", failed.detail)

        ws.retry_job(C, S, DAY, "bill-run")  # errors again: the next run tries nothing (no storm)
        assert check_due(ws, ws.clock()) == []
        assert [(d.outcome, d.detail) for d in notifications(ws)] == [("failed", failed.detail)]
        assert len([a for a in ws.audit() if a.action == "notify"]) == 1

        env = {**cli_env, "ALLEGRO_OPS_HOME": str(ws.home), "HOME": str(tmp_path), "SSL_CERT_FILE": str(pki.ca_file),
               "ACME_SMTP_USER": USER, "ACME_SMTP_PASSWORD": PASSWORD}
        cli = subprocess.run([*cli_cmd, "notify", "check", "--retry-failed", "--now", "2026-11-25T09:00:00Z"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert cli.returncode == 1 and failed.detail in cli.stdout and PASSWORD not in cli.stdout + cli.stderr
        assert cli.stderr.strip().splitlines() == ["error: 1 of 1 notifications failed (allegro-ops notify list; "
                                                   "notify check --retry-failed tries them again)"]
        assert [a.outcome for a in ws.audit() if a.action == "notify"] == ["failed", "failed"]
    assert smtp.record.logins == [] and smtp.record.commands == []

    with SmtpServer(pki.good) as fixed:  # the relay gets a certificate from the trusted CA
        configure(ws, fixed.port, **names)
        (retried,) = check_due(ws, ws.clock(), retry_failed=True)
    assert (retried.outcome, retried.detail) == ("sent", "SMTP accepted for 2 recipient(s)")
    assert [m.tls is not None for m in fixed.record.messages] == [True]
