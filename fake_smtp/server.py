"""A local SMTP peer on aiosmtpd: the tests' mail server and the local workspace's mail catcher.

It accepts what the bot sends over a plain relay, STARTTLS or implicit TLS, optionally behind AUTH PLAIN/LOGIN,
keeps every message parsed, and can misbehave on request (refuse DATA, go down, answer slowly) so the bot's
retries can be tested against a real SMTP conversation rather than a mock of aiosmtplib::

    async with MailCatcher(mode="starttls", username="bot", password="s3cret") as mail:
        await aiosmtplib.send(msg, **mail.client_settings())
        received = await mail.wait_for(lambda: mail.messages)
        assert received[0].tls and received[0].login == "bot"

aiosmtpd's Controller serves from its own thread and event loop, so everything the handler touches is behind a
lock, and ``wait_for`` is woken across threads with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .certificates import TlsFiles
from .received import Received, parse_message

Mode = Literal["plain", "starttls", "tls"]

HOST = "127.0.0.1"
# The name in the banner and EHLO reply; given explicitly because aiosmtpd's default, socket.getfqdn(), can stall
# on a machine with slow DNS.
BANNER_NAME = "fake-smtp.localhost"

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class MailCatcher:
    """A local SMTP server that keeps what it receives, for tests and the local workspace.

    mode "plain": no TLS (the demo's relay); "starttls": STARTTLS offered and required before MAIL and AUTH;
    "tls": TLS from the first byte, port-465 style. With username and password, AUTH (PLAIN or LOGIN) is required
    before MAIL and wrong credentials get 535. TLS modes make a throwaway CA unless ``tls`` is given; a client
    trusts ``catcher.tls.ca_file``.

    ``on_change``, when given, is called after every accepted or refused message and every ``go_down()`` /
    ``come_back()``: what ``state()`` answers may have changed. For messages it runs in aiosmtpd's server thread,
    so it must be thread-safe (the local workspace passes ``FakeSlack.notify_change``, which is). An exception it
    raises is logged, never answered.
    """

    def __init__(
        self,
        mode: Mode = "plain",
        username: str | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if mode not in ("plain", "starttls", "tls"):
            raise ValueError(f"mode must be 'plain', 'starttls' or 'tls', not {mode!r}")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.mode: Mode = mode
        self.username = username
        self.password = password
        self.tls = tls
        self.on_change = on_change
        self.host = HOST
        self.port = 0  # chosen at start(), then kept so come_back() listens where the bot was told to connect
        self._made_tls_dir: Path | None = None
        self._controller: Controller | None = None
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._refusals: list[tuple[int, int]] = []  # (code, how many more DATA commands get it)
        self._refused = 0
        self._delay = 0.0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._controller is not None:
            raise RuntimeError("MailCatcher is already running")
        if self.mode != "plain" and self.tls is None:
            from .certificates import make_tls_files

            self.tls = make_tls_files()
            self._made_tls_dir = self.tls.ca_file.parent
        if not self.port:
            self.port = _free_port()
        self._listen()
        return self

    def stop(self) -> None:
        self.go_down()
        if self._made_tls_dir is not None:
            shutil.rmtree(self._made_tls_dir, ignore_errors=True)
            self._made_tls_dir = None
            self.tls = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        # start() waits for the server thread and makes a CA; keep the caller's event loop free meanwhile.
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def is_up(self) -> bool:
        return self._controller is not None

    def _listen(self) -> None:
        tls_context = self.tls.server_context() if self.tls is not None else None
        with_auth = self.username is not None
        controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            server_hostname=BANNER_NAME,
            # Implicit TLS is set up by asyncio's server, not by aiosmtpd's STARTTLS
            ssl_context=tls_context if self.mode == "tls" else None,
            tls_context=tls_context if self.mode == "starttls" else None,
            require_starttls=self.mode == "starttls",
            authenticator=self._authenticate if with_auth else None,
            # aiosmtpd only counts STARTTLS as TLS, so with this True it hides AUTH on an implicit-TLS connection
            # (aio-libs/aiosmtpd#281). Plain mode with credentials is AUTH in the clear, as some internal relays do.
            auth_require_tls=not with_auth or self.mode == "starttls",
            # Not aiosmtpd's auth_required: with auth_require_tls False it warns on every connection. The handler's
            # handle_MAIL asks for AUTH instead, in every mode alike.
            auth_required=False,
        )
        controller.start()
        self._controller = controller

    # -- failure injection -------------------------------------------------------------------------------------

    def refuse(self, code: int = 451, times: int = 1) -> None:
        """Answer ``code`` to the next ``times`` DATA commands and drop those messages."""
        if not 400 <= code <= 599:
            raise ValueError(f"a refusal is a 4xx or 5xx code, not {code}")
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        with self._lock:
            self._refusals.append((code, times))

    def go_down(self) -> None:
        """Stop listening (connects are refused) and drop open sessions; messages already received stay."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
            self._changed()

    def come_back(self) -> None:
        """Listen again on the same port after go_down()."""
        if self._controller is None:
            self._listen()
            self._changed()

    def slow(self, seconds: float) -> None:
        """Delay every DATA answer, acceptance or refusal, by ``seconds`` (0 to stop).

        An accepted message is stored before the delay, as a real server would have queued it: a client that times out
        has still delivered, and a retry makes a duplicate.
        """
        with self._lock:
            self._delay = max(0.0, seconds)

    # -- what was received -------------------------------------------------------------------------------------

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)

    @property
    def refused(self) -> int:
        """How many DATA commands refuse() has answered."""
        with self._lock:
            return self._refused

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._refused = 0

    def state(self) -> dict[str, Any]:
        """A JSON-able summary for the local workspace's "Pager & mail" panel."""
        with self._lock:
            messages, refused = list(self._messages), self._refused
        return {
            "mode": self.mode,
            "host": self.host,
            "port": self.port,
            "up": self.is_up,
            "refused": refused,
            "messages": [received.summary() for received in messages],
        }

    def client_settings(self) -> dict[str, Any]:
        """Keyword arguments for aiosmtplib.send / aiosmtplib.SMTP that reach this catcher."""
        settings: dict[str, Any] = {"hostname": self.host, "port": self.port}
        if self.mode == "starttls":
            settings["start_tls"] = True
        elif self.mode == "tls":
            settings["use_tls"] = True
        else:
            settings["start_tls"] = False
        if self.tls is not None:
            settings["cert_bundle"] = str(self.tls.ca_file)
        if self.username is not None:
            settings.update(username=self.username, password=self.password)
        return settings

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str | None = None) -> Any:
        """Wait until ``predicate()`` is truthy and return its value; AssertionError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        waiter = (loop, woken)
        deadline = loop.time() + timeout
        with self._lock:
            self._waiters.append(waiter)
        try:
            while True:
                # Cleared before the check: a wake-up for a message that lands after the check is not lost.
                woken.clear()
                value = predicate()
                if value:
                    return value
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AssertionError(self._timeout_report(predicate, timeout, what))
                # Also re-check now and then, for predicates on state other than the mail (e.g. the bot's).
                try:
                    await asyncio.wait_for(woken.wait(), min(remaining, 0.25))
                except TimeoutError:
                    pass
        finally:
            with self._lock:
                self._waiters.remove(waiter)

    def _timeout_report(self, predicate: Callable[[], Any], timeout: float, what: str | None) -> str:
        described = what or getattr(predicate, "__qualname__", repr(predicate))
        with self._lock:
            messages, refused = list(self._messages), self._refused
        status = "up" if self.is_up else "down"
        headline = (
            f"fake SMTP ({self.mode}, port {self.port}, {status}): {described} still false after {timeout}s; "
            f"{len(messages)} message(s) received, {refused} refused"
        )
        lines = [headline]
        lines += [f"  {m.at:%H:%M:%S} {m.mail_from} -> {', '.join(m.rcpt_tos)}: {m.subject!r}" for m in messages]
        return "\n".join(lines)

    # -- called from the Controller's thread -------------------------------------------------------------------

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        if login == self.username and password == self.password:
            return AuthResult(success=True, auth_data=login)
        log.info("fake SMTP: %s login refused for %r", mechanism, login)
        return AuthResult(success=False, handled=False)  # handled=False makes aiosmtpd answer 535

    def _auth_missing(self, session: Session) -> bool:
        return self.username is not None and not session.authenticated

    def _take_refusal(self) -> int | None:
        with self._lock:
            if not self._refusals:
                return None
            code, times = self._refusals[0]
            if times <= 1:
                self._refusals.pop(0)
            else:
                self._refusals[0] = (code, times - 1)
            self._refused += 1
            return code

    def _store(self, received: Received) -> None:
        with self._lock:
            self._messages.append(received)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, woken in waiters:
            try:
                loop.call_soon_threadsafe(woken.set)
            except RuntimeError:  # that loop has closed; its waiter is gone with it
                pass
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # the listener's bug must not become the SMTP answer
                log.exception("fake SMTP: on_change failed")

    @property
    def _answer_delay(self) -> float:
        with self._lock:
            return self._delay


class _Handler:
    """aiosmtpd's handler: hooks only. Kept apart from MailCatcher because aiosmtpd takes every handler attribute
    named ``auth_*`` for an AUTH mechanism and every ``handle_*`` for a hook."""

    def __init__(self, catcher: MailCatcher) -> None:
        self.catcher = catcher

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.catcher._auth_missing(session):
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        catcher = self.catcher
        answer = self._accept_or_refuse(server, session, envelope)
        delay = catcher._answer_delay
        if delay:
            await asyncio.sleep(delay)
        return answer

    def _accept_or_refuse(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        catcher = self.catcher
        code = catcher._take_refusal()
        if code is not None:
            catcher._wake_waiters()
            return f"{code} {'4.3.0 Try again later' if code < 500 else '5.7.1 Message rejected'} (fake SMTP)"
        # Implicit TLS never passes through aiosmtpd's STARTTLS, so session.ssl stays None; the transport knows.
        tls = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        catcher._store(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                message=parse_message(envelope.original_content or b""),
                tls=tls,
                login=session.auth_data if session.authenticated else None,
            )
        )
        return "250 2.0.0 OK: queued"
