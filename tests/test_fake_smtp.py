"""The fake SMTP peer, driven by aiosmtplib as the bot drives it: each mode, AUTH, and the failures it injects."""

from __future__ import annotations

import asyncio
import json
from email.message import EmailMessage

import aiosmtplib
import pytest

from fake_smtp import MailCatcher, make_tls_files

SENDER = "rollback-bot@example.com"
ONCALL = "oncall@example.com"


def incident_mail(subject: str = "Rollback of crm_staging failed", *, attachment: bool = False) -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = ONCALL
    message["Subject"] = subject
    message["Message-ID"] = "<incident-42@rollback-bot.example.com>"
    message["In-Reply-To"] = "<incident-41@rollback-bot.example.com>"
    message.set_content("The restore of crm_staging stopped.\nSee the attached log.\n")
    if attachment:
        message.add_attachment("step,status\nrestore,failed\n", subtype="csv", filename="steps.csv")
        message.add_attachment(b"\x00\x01binary\r\n\xff", maintype="application", subtype="octet-stream",
                               filename="dump.bin")
    return message


async def test_plain_relay_receives_and_parses_a_message_with_attachments():
    async with MailCatcher() as mail:
        await aiosmtplib.send(incident_mail(attachment=True), hostname=mail.host, port=mail.port, start_tls=False)
        [received] = await mail.wait_for(lambda: mail.messages)

        assert received.mail_from == SENDER
        assert received.rcpt_tos == (ONCALL,)
        assert received.tls is False
        assert received.login is None
        assert received.subject == "Rollback of crm_staging failed"
        assert received.body_text == "The restore of crm_staging stopped.\nSee the attached log.\n"
        assert received.attachments == [
            ("steps.csv", "text/csv", "step,status\nrestore,failed\n"),
            ("dump.bin", "application/octet-stream", b"\x00\x01binary\r\n\xff"),
        ]
        assert received.message["Message-ID"] == "<incident-42@rollback-bot.example.com>"

        state = json.loads(json.dumps(mail.state()))
        assert state["mode"] == "plain" and state["up"] is True and state["port"] == mail.port
        [summary] = state["messages"]
        assert summary["from"] == SENDER
        assert summary["to"] == [ONCALL]
        assert summary["subject"] == "Rollback of crm_staging failed"
        assert summary["message_id"] == "<incident-42@rollback-bot.example.com>"
        assert summary["in_reply_to"] == "<incident-41@rollback-bot.example.com>"
        assert summary["attachments"] == ["steps.csv", "dump.bin"]
        assert summary["at"].endswith("+00:00")


async def test_starttls_with_auth_trusting_the_throwaway_ca(tmp_path):
    tls = make_tls_files(tmp_path)
    async with MailCatcher(mode="starttls", username="bot", password="s3cret", tls=tls) as mail:
        await aiosmtplib.send(
            incident_mail(), hostname=mail.host, port=mail.port, start_tls=True,
            cert_bundle=str(tls.ca_file), username="bot", password="s3cret",
        )
        [received] = await mail.wait_for(lambda: mail.messages)
        assert received.tls is True
        assert received.login == "bot"
        assert received.subject == "Rollback of crm_staging failed"


async def test_starttls_mode_accepts_auth_login_too_and_a_client_context():
    async with MailCatcher(mode="starttls", username="bot", password="s3cret") as mail:
        client = aiosmtplib.SMTP(hostname=mail.host, port=mail.port, start_tls=True,
                                 tls_context=mail.tls.client_context())
        async with client:
            await client.ehlo()  # aiosmtplib forgets the extensions on STARTTLS and asks again only when needed
            assert {"plain", "login"} <= set(client.server_auth_methods)
            await client.auth_login("bot", "s3cret")
            await client.send_message(incident_mail("via AUTH LOGIN"))
        [received] = await mail.wait_for(lambda: mail.messages)
        assert (received.subject, received.tls, received.login) == ("via AUTH LOGIN", True, "bot")


async def test_starttls_mode_refuses_mail_and_auth_before_starttls():
    async with MailCatcher(mode="starttls", username="bot", password="s3cret") as mail:
        async with aiosmtplib.SMTP(hostname=mail.host, port=mail.port, start_tls=False) as client:
            await client.ehlo()
            assert client.supports_extension("starttls")
            assert not client.supports_extension("auth")  # only offered once the session is encrypted

            response = await client.execute_command(b"AUTH", b"PLAIN", b"AGJvdABzM2NyZXQ=")
            assert response.code == 530
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
                await client.mail(SENDER)
            assert refused.value.code == 530
            assert "STARTTLS" in refused.value.message
        assert mail.messages == []


async def test_starttls_mode_without_auth_wants_auth_before_mail():
    async with MailCatcher(mode="starttls", username="bot", password="s3cret") as mail:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await aiosmtplib.send(incident_mail(), **{**mail.client_settings(), "username": None, "password": None})
        assert refused.value.code == 530
        assert mail.messages == []


async def test_implicit_tls_with_auth():
    async with MailCatcher(mode="tls", username="bot", password="s3cret") as mail:
        await aiosmtplib.send(
            incident_mail(), hostname=mail.host, port=mail.port, use_tls=True,
            cert_bundle=str(mail.tls.ca_file), username="bot", password="s3cret",
        )
        [received] = await mail.wait_for(lambda: mail.messages)
        assert (received.tls, received.login) == (True, "bot")


async def test_implicit_tls_rejects_an_untrusted_client_and_a_plaintext_one():
    async with MailCatcher(mode="tls") as mail:
        # The system's CAs do not know the throwaway CA, so verification fails
        with pytest.raises(aiosmtplib.SMTPConnectError):
            await aiosmtplib.send(incident_mail(), hostname=mail.host, port=mail.port, use_tls=True, timeout=5)
        # A plaintext client waits for a banner that never comes: the server is waiting for a TLS hello
        with pytest.raises(aiosmtplib.SMTPConnectTimeoutError):
            await aiosmtplib.send(incident_mail(), hostname=mail.host, port=mail.port, start_tls=False, timeout=1)
        await aiosmtplib.send(incident_mail(), **mail.client_settings())
        [received] = await mail.wait_for(lambda: mail.messages)
        assert (received.tls, received.login) == (True, None)


@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_wrong_password_is_535(mode):
    async with MailCatcher(mode=mode, username="bot", password="s3cret") as mail:
        settings = {**mail.client_settings(), "password": "wrong"}
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as failed:
            await aiosmtplib.send(incident_mail(), **settings)
        assert failed.value.code == 535
        assert mail.messages == []


async def test_refuse_answers_the_next_data_commands_then_accepts():
    async with MailCatcher() as mail:
        mail.refuse(451, 1)
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await aiosmtplib.send(incident_mail("first try"), **mail.client_settings())
        assert refused.value.code == 451
        assert mail.messages == [] and mail.refused == 1

        await aiosmtplib.send(incident_mail("second try"), **mail.client_settings())
        [received] = await mail.wait_for(lambda: mail.messages)
        assert received.subject == "second try"


async def test_refuse_permanently_several_times():
    async with MailCatcher() as mail:
        mail.refuse(550, times=2)
        for _ in range(2):
            with pytest.raises(aiosmtplib.SMTPDataError) as refused:
                await aiosmtplib.send(incident_mail(), **mail.client_settings())
            assert refused.value.code == 550
        await aiosmtplib.send(incident_mail(), **mail.client_settings())
        assert len(await mail.wait_for(lambda: mail.messages)) == 1
        assert mail.state()["refused"] == 2


async def test_go_down_refuses_connections_and_come_back_listens_on_the_same_port():
    async with MailCatcher() as mail:
        port = mail.port
        mail.go_down()
        assert mail.state()["up"] is False
        with pytest.raises(aiosmtplib.SMTPConnectError):
            await aiosmtplib.send(incident_mail("while down"), **mail.client_settings(), timeout=5)

        mail.come_back()
        assert mail.port == port
        await aiosmtplib.send(incident_mail("after coming back"), **mail.client_settings())
        [received] = await mail.wait_for(lambda: mail.messages)
        assert received.subject == "after coming back"


async def test_come_back_keeps_tls_and_auth():
    async with MailCatcher(mode="starttls", username="bot", password="s3cret") as mail:
        mail.go_down()
        mail.come_back()
        await aiosmtplib.send(incident_mail(), **mail.client_settings())
        [received] = await mail.wait_for(lambda: mail.messages)
        assert (received.tls, received.login) == (True, "bot")


async def test_slow_delays_the_answer_but_the_message_was_delivered():
    async with MailCatcher() as mail:
        mail.slow(2.0)
        with pytest.raises(aiosmtplib.SMTPTimeoutError):
            await aiosmtplib.send(incident_mail(), **mail.client_settings(), timeout=0.5)
        # Stored before the late answer: a retry after a timeout would be a duplicate
        assert len(mail.messages) == 1

        mail.slow(0)
        await aiosmtplib.send(incident_mail(), **mail.client_settings(), timeout=5)
        assert len(mail.messages) == 2


async def test_wait_for_times_out_with_an_assertion_that_says_what_it_saw():
    async with MailCatcher() as mail:
        await aiosmtplib.send(incident_mail("only this one"), **mail.client_settings())
        with pytest.raises(AssertionError) as timed_out:
            await mail.wait_for(lambda: len(mail.messages) >= 2, timeout=0.2, what="a second mail")
        report = str(timed_out.value)
        assert "a second mail" in report
        assert "1 message(s) received" in report
        assert "'only this one'" in report


async def test_wait_for_is_woken_by_a_message_from_the_server_thread():
    async with MailCatcher() as mail:
        waiting = asyncio.create_task(mail.wait_for(lambda: [m for m in mail.messages if m.subject == "late"]))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await aiosmtplib.send(incident_mail("late"), **mail.client_settings())
        [received] = await asyncio.wait_for(waiting, 2)
        assert received.subject == "late"


async def test_stop_removes_the_ca_it_made():
    mail = MailCatcher(mode="tls")
    async with mail:
        ca_file = mail.tls.ca_file
        assert ca_file.exists()
    assert not ca_file.exists()
    assert mail.tls is None


def test_bad_arguments_are_refused_early():
    with pytest.raises(ValueError):
        MailCatcher(mode="ssl")
    with pytest.raises(ValueError):
        MailCatcher(username="bot")
    with pytest.raises(ValueError):
        MailCatcher().refuse(250)
