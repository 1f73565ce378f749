"""The README's first command, proven in a browser: `rollback-bot demo` sets up a broken CRM and
serves the local workspace; in headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) an operator types `/rollback full demo`, a second user approves in the confirm
dialog, and RESOLVED appears. The demo database then equals its backup, exactly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from uuid import uuid4

import pytest
from playwright.async_api import async_playwright, expect

from demo.fingerprint import diff, fingerprint
from support.cli import free_port
from support.harness import ADMIN_DSN, database_names, drop_databases_like, dsn_of

BIN = str(Path(sys.executable).with_name("rollback-bot"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCREENSHOT = os.environ.get("ROLLBACK_SCREENSHOT")  # e.g. docs/workspace.png, to refresh the README's picture

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium package is not installed")


async def restored_backup_fingerprint(backup: Path):
    """The backup's exact content: restore it into a scratch database and fingerprint that."""
    scratch = f"rbtest_{uuid4().hex[:10]}"
    try:
        proc = await asyncio.create_subprocess_exec("createdb", "-h", "127.0.0.1", "-U", "postgres", scratch)
        await proc.wait()
        proc = await asyncio.create_subprocess_exec("pg_restore", "-h", "127.0.0.1", "-U", "postgres", "-d", scratch,
                                                    str(backup))
        assert await proc.wait() == 0
        return await fingerprint(dsn_of(scratch))
    finally:
        await drop_databases_like(scratch)


async def test_demo_in_the_browser_from_command_to_resolved(tmp_path):
    state, dbname, port = tmp_path / "demo", f"rbtest_demo_{uuid4().hex[:8]}", free_port()
    demo = await asyncio.create_subprocess_exec(
        BIN, "demo", "--state", str(state), "--db", dbname, "--rows", "20000", "--port", str(port), "--no-browser",
        "--admin-dsn", ADMIN_DSN, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = []
    try:
        while not any("Local workspace:" in line for line in output):
            line = (await asyncio.wait_for(demo.stdout.readline(), 120)).decode()
            assert line, "".join(output)
            output.append(line)
        url = re.search(r"Local workspace: (\S+)", "".join(output)).group(1)
        assert "rollback-bot demo --clean" in "".join(output)
        said = "".join(output) + (await asyncio.wait_for(demo.stdout.readline(), 10)).decode()
        assert "Pager and mail stay local" in said and "nothing leaves this machine" in said

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(url)
            await page.locator("#user").select_option(label="olivia (operator)")
            await page.locator("#composer").fill("/rollback full demo")
            await page.locator("#composer").press("Enter")
            await expect(page.get_by_text("Started the full rollback")).to_be_visible(timeout=30_000)
            await expect(page.get_by_text("Approval needed").first).to_be_visible(timeout=30_000)

            await page.locator("#user").select_option(label="alice (approver)")
            await expect(page.get_by_text("Started the full rollback")).to_have_count(0)  # olivia's ephemeral only
            await page.get_by_role("button", name="Approve", exact=True).first.click()
            dialog = page.get_by_role("dialog")
            await expect(dialog).to_be_visible()
            await dialog.get_by_role("button", name="Approve", exact=True).click()
            await expect(page.get_by_text("INCIDENT RESOLVED").first).to_be_visible(timeout=90_000)
            await expect(page.get_by_text("Approved by").first).to_be_visible()
            # Paged and mailed, to the local stand-ins the demo started: the "Pager & mail" panel lists them.
            panel = page.locator('#panels [data-panel="pager-mail"]')
            await expect(panel.get_by_role("heading", name="Pager & mail", exact=True)).to_be_visible()
            await expect(panel.locator(".pbadge", has_text=re.compile("^resolve$"))).to_have_count(1, timeout=30_000)
            await expect(panel.locator(".pbadge", has_text=re.compile("^trigger$"))).to_have_count(1)
            await expect(panel).to_contain_text("INCIDENT ALERT")
            await expect(panel).to_contain_text("INCIDENT_REPORT-", timeout=30_000)  # RESOLVED, with the report
            await page.get_by_text("INCIDENT RESOLVED").first.evaluate("e => e.scrollIntoView({block: 'center'})")
            await page.screenshot(path=str(tmp_path / "workspace.png"), full_page=False)
            if SCREENSHOT:
                await page.screenshot(path=SCREENSHOT, full_page=False)
            await browser.close()

        backup = next(state.glob("backups/demo/*/demo_full_backup.dump"))
        assert diff(await restored_backup_fingerprint(backup), await fingerprint(dsn_of(dbname))) == []
        assert any("__failed_" in name for name in await database_names(dbname))
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGINT)
            await asyncio.wait_for(demo.communicate(), 60)
        clean = await asyncio.create_subprocess_exec(
            BIN, "demo", "--clean", "--state", str(state), "--db", dbname, "--admin-dsn", ADMIN_DSN,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        said = (await clean.communicate())[0].decode()
    assert clean.returncode == 0, said
    assert f"dropped database {dbname}" in said and not state.exists()
    assert await database_names(dbname) == set()
