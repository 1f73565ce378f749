"""The local workspace page in a real browser (Debian's Chromium, driven by Playwright, headless)
against ``FakeSlack(ui=True)`` and the tiny signature-checking bot of test_workspace_ui."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import aiosmtplib
import pytest
from playwright.async_api import Page, async_playwright, expect

from bot.local_peers import PANEL_NAME, PANEL_TITLE, pager_mail_panel
from fake_pagerduty import FakePagerDuty
from fake_smtp import MailCatcher
from support.workspace import ALICE, BOB, CHANNEL, workspace

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
expect.set_options(timeout=5_000)


@pytest.fixture
async def env():
    """(fake, bot, page): the workspace, its bot, and a page opened as Alice; no page errors allowed."""
    async with workspace() as (fake, bot), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{fake.base_url}/?user={ALICE}")
        await expect(page.locator("#conn")).to_have_text("Live")
        try:
            yield fake, bot, page
        finally:
            await browser.close()
        assert errors == []


def message(page: Page, ts: str, pane: str = "#messages"):
    return page.locator(f'{pane} [data-ts="{ts}"]')


async def test_commands_and_ephemerals_only_for_their_user(env):
    fake, bot, page = env
    await expect(page.locator('#channels a[data-channel="C0INCIDENTS"]')).to_have_text("# incidents")
    await expect(page.locator('#dms a[data-channel="D0ALICE"]')).to_have_text(re.compile("Rollback Bot"))
    await expect(page.locator("#user")).to_have_value(ALICE)
    composer = page.get_by_label("Message #incidents")
    await expect(composer).to_have_attribute("placeholder", "Message #incidents — try /rollback help")

    await composer.fill("/demo hello there")
    await composer.press("Enter")
    ephemeral = page.locator('#messages [data-ephemeral="true"]')
    await expect(ephemeral).to_contain_text("Hi @alice, you said: hello there")
    await expect(ephemeral).to_contain_text("Only visible to you")
    assert bot.last("command")["text"] == "hello there" and bot.last("command")["user_id"] == ALICE
    await expect(composer).to_have_value("")

    await composer.fill("hi @bob <script>window.pwned = 1</script>")
    await composer.press("Enter")
    mine = page.locator("#messages article").last
    await expect(mine).to_contain_text("hi @bob <script>window.pwned = 1</script>")
    await expect(mine.locator(".mention")).to_have_text("@bob")
    assert await page.evaluate("window.pwned") is None

    await page.select_option("#user", BOB)  # Bob does not see Alice's ephemeral
    await expect(page).to_have_url(re.compile(f"user={BOB}"))
    await expect(page.locator('#dms a[data-channel="D0BOB"]')).to_be_visible()
    await expect(page.locator('[data-channel="D0ALICE"]')).to_have_count(0)
    await expect(mine).to_be_visible()
    await expect(ephemeral).to_have_count(0)
    await page.select_option("#user", ALICE)
    await expect(ephemeral).to_have_count(1)

    fake.add_channel("C0OPS", "ops")
    fake.post_message(CHANNEL, "moved to <#C0OPS>", BOB)
    await page.locator("#messages a.chan-ref", has_text="#ops").click()  # channel links switch channel
    await expect(page.get_by_role("heading", name="#ops")).to_be_visible()
    await expect(page.locator('#channels a[aria-current="page"]')).to_have_attribute("data-channel", "C0OPS")


async def test_block_kit_card_confirm_dialog_and_checkboxes(env):
    fake, bot, page = env
    await fake.send_command(ALICE, "card", CHANNEL, "/demo")
    card = message(page, fake.messages(CHANNEL)[-1].ts)
    await expect(card.get_by_role("heading", name="Rollback plan")).to_be_visible()
    await expect(card.locator(".fields")).to_contain_text("Backup")
    await expect(card.locator(".fields > div")).to_have_count(2)
    await expect(card.locator(".b-section strong").first).to_have_text("Staging")
    await expect(card.locator(".b-context")).to_have_text("Approvers: @dbas")
    await expect(card.locator("hr")).to_have_count(1)
    await expect(card.get_by_role("button", name="Write report")).to_have_class(re.compile("primary"))
    await expect(card.get_by_role("checkbox", name="Notify")).to_be_checked()
    await expect(card.get_by_role("checkbox", name="Smoke tests")).not_to_be_checked()

    dialog = page.locator("#confirm")
    await card.get_by_role("button", name="Approve").click()  # danger button with a confirm object
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("heading")).to_have_text("Roll back staging?")
    await expect(dialog).to_contain_text("This replaces live.")
    await expect(dialog.get_by_role("button", name="Yes, roll back")).to_have_class(re.compile("danger"))
    await dialog.get_by_role("button", name="Keep it").click()
    await expect(dialog).to_be_hidden()
    await card.get_by_role("button", name="Approve").click()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await card.get_by_role("button", name="Details").click()  # sent straight away: no confirm object
    await fake.wait_for(lambda: any(r.get("actions", [{}])[0].get("action_id") == "details" for r in bot.received), 5)
    assert not [r for r in bot.received if r.get("actions", [{}])[0].get("action_id") == "approve"]

    await card.get_by_role("button", name="Approve").click()
    await dialog.get_by_role("button", name="Yes, roll back").click()
    await expect(page.locator("#messages")).to_contain_text("Approved by @alice")

    await card.get_by_role("checkbox", name="Backup verified").check()
    await expect(card.locator(".edited")).to_have_text("(edited)")  # the bot redrew the ticks
    assert [o["value"] for o in bot.last("block_actions")["actions"][0]["selected_options"]] == ["a", "b"]
    await expect(card.get_by_role("checkbox", name="Backup verified")).to_be_checked()
    await expect(card.get_by_role("checkbox", name="Notify")).to_be_checked()
    await expect(card.get_by_role("checkbox", name="Backup verified")).to_be_focused()  # kept across the redraw


async def test_thread_pane_and_file_preview(env):
    fake, _, page = env
    await fake.send_command(ALICE, "thread", CHANNEL, "/demo")
    await fake.send_command(ALICE, "file", CHANNEL, "/demo")
    parent = fake.find_message(CHANNEL, lambda m: m.text == "Status thread")
    await message(page, parent.ts).get_by_role("button", name="1 reply").click()
    thread = page.locator("#thread")
    await expect(thread).to_be_visible()
    await expect(thread).to_contain_text("First reply")
    reply_box = page.get_by_label("Reply in thread")
    await expect(reply_box).to_be_focused()
    await reply_box.fill("on it")
    await reply_box.press("Enter")
    await expect(thread.locator("article").last).to_contain_text("on it")
    await expect(message(page, parent.ts).get_by_role("button", name="2 replies")).to_be_visible()
    assert [m.text for m in fake.replies(CHANNEL, parent.ts)] == ["First reply", "on it"]
    await page.keyboard.press("Escape")
    await expect(thread).to_be_hidden()

    upload = fake.find_message(CHANNEL, lambda m: bool(m.files))
    file_msg = message(page, upload.ts)
    link = file_msg.get_by_role("link", name="Incident report")
    await expect(link).to_have_attribute("href", f"/files/{upload.files[0].id}")
    await file_msg.get_by_text("Preview report.md").click()
    await expect(file_msg.locator("pre.preview")).to_have_text("# Report\n\nRoot cause: *migration 7*\n")


async def test_modal_opens_shows_errors_submits_and_closes(env):
    fake, _, page = env
    await fake.send_command(ALICE, "card", CHANNEL, "/demo")
    await message(page, fake.messages(CHANNEL)[-1].ts).get_by_role("button", name="Write report").click()
    modal = page.locator("#modal")
    await expect(modal.get_by_role("heading", name="Incident report")).to_be_visible()
    cause = modal.get_by_label("Root cause")
    await expect(cause).to_have_attribute("placeholder", "What caused it?")
    await cause.fill("bad")
    await modal.get_by_role("button", name="Save").click()
    await expect(modal.locator(".field-error")).to_have_text("Give a real cause")
    await expect(cause).to_have_attribute("aria-invalid", "true")
    await cause.fill("Migration 7 dropped a column")
    await modal.get_by_role("button", name="Save").click()
    await expect(modal).to_be_hidden()
    await expect(page.locator("#messages")).to_contain_text("Saved: Migration 7 dropped a column")
    assert not fake.views

    await page.get_by_label("Message #incidents").fill("/demo modal")
    await page.get_by_label("Message #incidents").press("Enter")
    await expect(modal).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(modal).to_be_hidden()
    await fake.wait_for(lambda: not fake.views, 5)


async def test_pager_and_mail_panel_lists_pages_and_mails_live_as_text(env):
    """The panel `rollback-bot local` adds, fed by a real stand-in PagerDuty and mail catcher."""
    fake, _, page = env
    key = "R0UTINGKEY0123456789abcdefABCDEF"
    async with FakePagerDuty(routing_keys={key}, on_change=fake.notify_change) as pager, \
            MailCatcher(on_change=fake.notify_change) as mail:
        fake.add_panel(PANEL_NAME, PANEL_TITLE, lambda: pager_mail_panel(pager, mail, page_at_level=3))
        panel = page.locator(f'#panels [data-panel="{PANEL_NAME}"]')
        await expect(panel.get_by_role("heading", name="Pager & mail", exact=True)).to_be_visible()
        await expect(panel).to_contain_text("Nothing paged yet. An incident at level 3 or more is paged.")
        await expect(panel).to_contain_text("Nothing mailed yet.")

        summary = 'Staging: <img src=x onerror="window.pwned=1"> checkout down · INC-1'
        async with aiohttp.ClientSession() as http:
            await http.post(pager.url, json={"routing_key": key, "event_action": "trigger", "dedup_key": "INC-1",
                                             "payload": {"summary": summary, "source": "db1", "severity": "critical"}})
        reply = EmailMessage()
        reply["From"], reply["To"], reply["Subject"] = "bot@localhost", "dba-team@example.com", "Re: INCIDENT ALERT"
        reply["In-Reply-To"] = "<INC-1.alert@localhost>"
        reply.set_content("resolved")
        reply.add_attachment("# report", subtype="markdown", filename="INCIDENT_REPORT-INC-1.md")
        await aiosmtplib.send(reply, hostname=mail.host, port=mail.port, start_tls=False)

        paged = panel.locator(".pitem").first
        await expect(paged.locator(".pitem-title")).to_have_text(summary)  # shown as text, never as HTML
        await expect(paged.locator(".pbadge")).to_have_text(["trigger", "critical", "triggered"])
        await expect(paged.locator("dd")).to_contain_text(["INC-1", "#1 triggered"])
        mailed = panel.locator(".pitem").last
        await expect(mailed.locator(".pitem-title")).to_have_text("Re: INCIDENT ALERT")
        await expect(mailed.locator(".pbadge").first).to_have_text("reply")
        await expect(mailed).to_contain_text("INCIDENT_REPORT-INC-1.md")
        await expect(mailed).to_contain_text("dba-team@example.com")
        await expect(panel.locator("img")).to_have_count(0)
        assert await page.evaluate("window.pwned") is None

        toggle = page.locator(f'#panel-links [data-panel="{PANEL_NAME}"]')
        await expect(toggle).to_have_text("Pager & mail · 2")
        await panel.get_by_role("button", name="Hide Pager & mail").click()
        await expect(page.locator("#panels")).to_be_hidden()
        await expect(toggle).to_have_attribute("aria-pressed", "false")
        await toggle.click()
        await expect(panel).to_be_visible()
