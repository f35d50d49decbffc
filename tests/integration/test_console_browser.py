"""The ops console as a person uses it: headless Chromium (Debian's package, driven by Playwright) against a
running ops_api, risk and execution on a test database and bus. Screenshots go to artifacts/console/."""

from __future__ import annotations

import shutil
import time
from decimal import Decimal
from pathlib import Path

import httpx
import playwright.async_api as playwright_api  # the pip package only: the browser is Debian's chromium
import pytest

from libs.common import subjects
from libs.common.contracts import Fill, utcnow
from tests.helpers import OPERATOR_TOKEN, VIEWER_TOKEN, ops_api_url

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def suite(services, tmp_path):
    services.configure(
        {
            "ops_api": {"auth_max_failures": 50},
            "storage": {
                "artifacts_dir": str(tmp_path / "artifacts"),
                "backup": {"enabled": False, "dir": str(tmp_path / "backups")},
            },
        }
    )
    for name in ("risk", "execution"):
        services.start(name)
    return ops_api_url(services.start("ops_api"))


@pytest.fixture
def chromium() -> str:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run .ci/system-deps.sh"
    return CHROMIUM


@pytest.fixture
async def page(chromium, tmp_path):
    async with playwright_api.async_playwright() as pw:
        # a fresh profile per test (Playwright passes it as --user-data-dir)
        ctx = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium"),
            executable_path=chromium,
            headless=True,
            args=FLAGS,
            viewport={"width": 412, "height": 915},
        )  # a phone
        try:
            yield ctx.pages[0] if ctx.pages else await ctx.new_page()
        finally:
            await ctx.close()


async def engaged(base: str) -> bool:
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"{base}/kill-switch", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
        return r.json()["engaged"]


async def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def login(page, token: str) -> None:
    await page.fill("#token", token)
    await page.click("#token-form button[type=submit]")


async def test_the_console_shows_a_live_fill_and_engages_the_kill_switch_for_the_operator_only(
    suite, page, bus
):
    expect = playwright_api.expect
    await page.goto(suite + "/")
    await expect(page.locator("#kill-switch")).to_have_text(
        "kill switch off"
    )  # server-rendered, no token yet

    await login(page, "not-the-token-1234")
    await expect(page.locator("#auth-message")).to_contain_text("wrong or missing token")
    await shot(page, "01-wrong-token")

    await login(page, VIEWER_TOKEN)
    await expect(page.locator("#live")).to_have_text("live")
    await expect(page.locator("#services-table")).to_contain_text("execution")
    await expect(page.locator("#fills")).to_contain_text("nothing yet")

    fill = Fill(
        ts=utcnow(),
        client_order_id="c-console-1",
        trade_id="console-1",
        symbol="BTC/USDT",
        side="BUY",
        quantity=Decimal("0.01"),
        price=Decimal("50123.5"),
        fee=Decimal("0.5"),
    )
    await bus.publish(subjects.fill("BTCUSDT"), fill)
    await expect(page.locator("#fills")).to_contain_text("c-console-1")  # pushed, no reload
    await expect(page.locator("#events")).to_contain_text("fill BTC/USDT BUY 0.01 @ 50123.5")
    await shot(page, "02-live-fill")

    # the viewer token cannot engage: a clear refusal and nothing changes
    await page.click("#ks-engage")
    await page.fill("#op-token", VIEWER_TOKEN)
    await page.click("#ks-confirm-go")
    await expect(page.locator("#ks-result")).to_contain_text("operator token is needed")
    assert await engaged(suite) is False
    await shot(page, "03-viewer-refused")

    # pause new entries from the page: risk applies it and says so
    await page.click("#ks-cancel")
    await page.click("#pause-entries")
    await page.fill("#op-token", OPERATOR_TOKEN)
    await page.click("#ks-confirm-go")
    await expect(page.locator("#ks-result")).to_contain_text("pause: applied by risk")
    await expect(page.locator("#events")).to_contain_text("pause applied by risk")

    # the operator engages (positive control): HALTED and both acknowledgements within 2 s of the click
    await page.click("#ks-engage")
    await page.fill("#op-token", OPERATOR_TOKEN)
    await page.fill("#ks-reason", "browser test")
    started = time.monotonic()
    await page.click("#ks-confirm-go")
    await expect(page.locator("#ks-result")).to_contain_text(
        "HALTED: acknowledged by execution, risk", timeout=2000
    )
    await expect(page.locator("#kill-switch")).to_have_text("KILL SWITCH ENGAGED", timeout=2000)
    await expect(page.locator("#trading-state")).to_have_text("HALTED", timeout=2000)
    print(f"console: click to HALTED with acknowledgements in {time.monotonic() - started:.3f} s")
    await expect(page.locator("#acks")).to_contain_text("risk acknowledged")
    await shot(page, "04-halted")
    assert await engaged(suite) is True


def test_the_first_paint_reads_without_javascript_and_names_the_other_ways_to_stop(suite, tmp_path):
    r = httpx.get(suite + "/", timeout=10)
    assert r.status_code == 200 and "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert "kill switch off" in html and "<td>execution</td>" in html and "{{" not in html
    assert (
        "python3 -m scripts.kill_switch --config configs/bot.yaml" in html
        and "bnml kill-switch engage" in html
    )
    assert VIEWER_TOKEN not in html and OPERATOR_TOKEN not in html
    for asset in ("/console/console.js", "/console/console.css"):
        assert httpx.get(suite + asset, timeout=10).status_code == 200
