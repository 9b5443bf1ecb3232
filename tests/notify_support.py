"""Real servers for the notification tests: an HTTP server that records the webhook POSTs it gets,
and a small SMTP server (no aiosmtpd here) that speaks enough of the protocol for smtplib:
EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT. Both run in threads on 127.0.0.1 and
record before they answer, so a delivery that returned has been recorded."""
from __future__ import annotations

import base64
import email
import email.policy
import json
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookServer:
    """``with WebhookServer() as hooks``: POSTs land in ``hooks.requests``; ``hooks.status`` is
    the answer (200 unless set)."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        self.requests: list[Hook] = []
        self.status = status
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                length = int(self.headers.get("Content-Length") or 0)
                owner.requests.append(Hook(self.path, {k.lower(): v for k, v in self.headers.items()},
                                           self.rfile.read(length)))
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "/hooks/billing") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> "WebhookServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    auth: tuple[str, str] | None = None

    @property
    def text(self) -> str:
        return self.message.get_content().replace("\r\n", "\n")


@dataclass
class _Session:
    auth: tuple[str, str] | None = None
    sender: str = ""
    recipients: list[str] = field(default_factory=list)


class SmtpServer:
    """``with SmtpServer() as smtp``: delivered messages land in ``smtp.messages``."""

    def __init__(self) -> None:
        self.messages: list[Mail] = []
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                owner._session(self.rfile, self.wfile)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _session(self, rfile, wfile) -> None:
        def say(line: str) -> None:
            wfile.write(line.encode() + b"\r\n")
            wfile.flush()

        s = _Session()
        say("220 127.0.0.1 test ESMTP")
        while True:
            raw = rfile.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                say("250-127.0.0.1")
                say("250-AUTH PLAIN")
                say("250 8BITMIME")
            elif verb == "HELO":
                say("250 127.0.0.1")
            elif verb == "AUTH" and arg.upper().startswith("PLAIN"):
                token = arg[5:].strip()
                if not token:
                    say("334 ")
                    token = rfile.readline().decode().strip()
                _, user, password = base64.b64decode(token).decode().split("\0")
                s.auth = (user, password)
                say("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                s.sender, s.recipients = arg.split(":", 1)[1].split()[0].strip("<>"), []
                say("250 OK")
            elif verb == "RCPT":
                s.recipients.append(arg.split(":", 1)[1].split()[0].strip("<>"))
                say("250 OK")
            elif verb == "DATA":
                say("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while True:
                    part = rfile.readline()
                    if part in (b".\r\n", b".\n", b""):
                        break
                    lines.append(part[1:] if part.startswith(b"..") else part)
                message = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
                self.messages.append(Mail(s.sender, list(s.recipients), message, s.auth))
                say("250 OK queued")
            elif verb in ("RSET", "NOOP"):
                say("250 OK")
            elif verb == "QUIT":
                say("221 Bye")
                return
            else:
                say("502 Command not implemented")

    def __enter__(self) -> "SmtpServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was bound a moment ago and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
