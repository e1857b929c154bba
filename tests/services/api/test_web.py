"""The web page per role in a real browser: Debian's Chromium, headless, driven by chromedriver (selenium) against the
session's API. Each role logs in with its token and sees its charts with the API's numbers; the Admin drills from a
department to a task's raw events by clicking through the page; the Financial Director downloads the month's costs
as CSV into the browser's download folder. Screenshots of each step land in the test's tmp_path."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import shutil
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from services.api.routers import web
from tests.support.fixtures_api import Api

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT_S = 60  # a busy 2-core machine renders slowly; every wait ends as soon as its element is there


class Browser:
    """One headless Chromium with its own download folder; screenshots named by step into the test's folder."""

    def __init__(self, out: Path) -> None:
        if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
            pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed (Debian's chromium and chromium-driver): "
                        "run `make system-deps`")
        self.out = out
        self.downloads = out / "downloads"
        self.downloads.mkdir(parents=True)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,2200"):
            options.add_argument(flag)
        options.add_experimental_option("prefs", {"download.default_directory": str(self.downloads),
                                                  "download.prompt_for_download": False})
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver: WebDriver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(out / "chromedriver.log")),
                                                  options=options)
        self.shots = 0

    def wait(self, css: str) -> WebElement:
        return WebDriverWait(self.driver, WAIT_S).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)),
                                                        f"no {css} on the page")

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def click(self, css: str) -> None:
        WebDriverWait(self.driver, WAIT_S).until(EC.element_to_be_clickable((By.CSS_SELECTOR, css)),
                                                 f"no clickable {css}").click()

    def shot(self, name: str) -> Path:
        self.shots += 1
        path = self.out / f"{self.shots:02d}-{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        return path

    def login(self, url: str, token: str, role: str) -> None:
        self.driver.get(url + "/")
        self.wait("input[name=token]").send_keys(token)
        self.shot(f"{role}-login")
        self.click("button[type=submit]")
        assert self.wait(f"[data-who={role}]").text

    def errors(self) -> list[str]:
        """The console's errors since the last call (a failed request, an exception in the page)."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def close(self) -> None:
        """Quit, leaving the last screen, its text and the browser's console beside the screenshots (what a failure
        looked like)."""
        try:
            self.shot("last")
            (self.out / "last.txt").write_text(self.driver.find_element(By.TAG_NAME, "body").text)
            console = "\n".join(f"{e['level']} {e['message']}" for e in self.driver.get_log("browser"))
            (self.out / "console.txt").write_text(console)
        finally:
            self.driver.quit()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    opened = Browser(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def rects(browser: Browser, chart: str) -> list[dict[str, str]]:
    """Each shape of the chart named `chart`, by its data- attributes (label, series, category, value)."""
    browser.wait(f"svg[data-chart='{chart}'] rect[data-value]")
    return browser.driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(r => ({...r.dataset}))",
        f"svg[data-chart='{chart}'] rect[data-value]")


def month_span(chosen: datetime, months_before: int = 0) -> dict[str, str]:
    """The page's range for the chosen time's month (time.js monthRange): from the first of the month `months_before`
    earlier to the first of the next month or tomorrow, whichever is sooner."""
    year, month = chosen.year, chosen.month - months_before
    while month < 1:
        year, month = year - 1, month + 12
    nxt = datetime(chosen.year + chosen.month // 12, chosen.month % 12 + 1, 1, tzinfo=timezone.utc)
    now = datetime.now(timezone.utc)
    tomorrow = datetime(now.year, now.month, now.day, tzinfo=timezone.utc) + timedelta(days=1)
    return {"from": f"{year:04d}-{month:02d}-01T00:00:00Z", "to": min(nxt, tomorrow).strftime("%Y-%m-%dT%H:%M:%SZ")}


def recent_span(days: int) -> dict[str, str]:
    """The page's range of the last `days` days up to the next hour (time.js recent)."""
    to = datetime.fromtimestamp(-(-time.time() // 3600) * 3600, timezone.utc)
    return {"from": (to - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ"), "to": to.strftime("%Y-%m-%dT%H:%M:%SZ")}


def rows(api: Api, token: str, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    answer = api.get(path, token, {**params, "limit": 500})
    assert answer.status_code == 200, answer.text
    assert answer.json()["page"]["next_offset"] is None, "more rows than one page: the comparison would miss some"
    return answer.json()["data"]


def test_the_financial_director_sees_costs_by_department_and_month_and_downloads_the_months_csv(
        api: Api, browser: Browser) -> None:
    token = api.tokens[("financial_director", 0)]
    browser.login(api.url, token, "financial_director")
    # the month of the fixture's last hour: the current one, but for the first hour of a month
    chosen = api.data.end - timedelta(hours=1)
    month_input = browser.wait("input[data-control=month]")
    browser.driver.execute_script(  # a controlled React input: set its value as typing would, then tell React
        "const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;"
        "set.call(arguments[0], arguments[1]); arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
        month_input, f"{chosen:%Y-%m}")
    browser.wait(f"section[data-section=report] button[data-month='{chosen:%Y-%m}']")
    shown = rects(browser, "costs-by-department-month")
    browser.shot("financial_director-costs")
    # the API's answer for the chart's range, summed per department and month as exact decimals
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in rows(api, token, "/v1/costs", {"granularity": "month", "group_by": "department",
                                              **month_span(chosen, 11)}):
        expected[(row["department_id"], row["bucket"][:7])] += Decimal(row["total_cost"])
    assert expected and any(expected.values()), "the fixture's tenant has costs"
    assert {(r["series"], r["category"]): Decimal(r["value"]) for r in shown} == expected
    cells = {(c.get_attribute("data-department"), c.get_attribute("data-month")): c.text
             for c in browser.all("table[data-table='costs-by-department-month'] td[data-month]") if c.text}
    assert {k: Decimal(v) for k, v in cells.items()} == expected  # the table's text, to the last decimal

    browser.click("button[data-action=download-report]")
    status = browser.wait("[data-status=done]")
    browser.shot("financial_director-report")
    month = month_span(chosen)
    direct = api.get("/v1/exports/costs", token, {"granularity": "day", **month, "format": "csv"})
    assert direct.status_code == 200, direct.text
    name = re.search(r'filename="([^"]+)"', direct.headers["content-disposition"]).group(1)
    assert name in status.text
    saved = browser.downloads / name
    deadline = time.monotonic() + WAIT_S
    while not saved.exists() and time.monotonic() < deadline:  # Chromium renames its .crdownload when done
        time.sleep(0.2)
    assert saved.exists(), sorted(p.name for p in browser.downloads.iterdir())
    downloaded = list(csv.reader(io.StringIO(saved.read_text())))
    header, body = downloaded[0], downloaded[1:]
    assert {"department_id", "project_id", "total_cost"} <= set(header)
    assert body, "the month's rows"
    assert sorted(map(tuple, body)) == sorted(map(tuple, list(csv.reader(io.StringIO(direct.text)))[1:]))
    total = sum(Decimal(r[header.index("total_cost")]) for r in body)
    assert total == sum(v for (_, m), v in expected.items() if m == month["from"][:7])  # the report adds up

    # the month's drill-down stops at users: the Financial Director may not read tasks, and the API gives no link
    department = sorted(k[0] for k in expected)[0]
    browser.click(f"table[data-table=drill-department] button[data-drill='{department}']")
    browser.click("table[data-table=drill-project] button[data-drill]")
    users = browser.wait("table[data-table=drill-user]")
    assert users.find_elements(By.CSS_SELECTOR, "td") and not users.find_elements(By.CSS_SELECTOR, "button")
    assert "no link below this level" in browser.wait("section[data-section=drill]").text
    browser.shot("financial_director-drill-users")
    assert not browser.errors()


def test_the_pipeline_td_sees_runs_and_failures_per_model_and_checkpoint(api: Api, browser: Browser) -> None:
    token = api.tokens[("pipeline_td", 0)]
    browser.login(api.url, token, "pipeline_td")
    shown = rects(browser, "runs-by-checkpoint")
    browser.shot("pipeline_td-models")
    expected = {}
    for row in rows(api, token, "/v1/models/performance", recent_span(7)):
        label = f"{row['base_model']} {row['model_version']} · {row['checkpoint_id'] or '(no checkpoint)'}"
        expected[(label, "succeeded")] = row["runs"] - row["failures"]
        expected[(label, "failed")] = row["failures"]
    assert expected and any(v for (_, s), v in expected.items() if s == "failed"), "the fixture has failed runs"
    assert {(r["label"], r["series"]): int(r["value"]) for r in shown} == expected
    errors = {f"{'run' if r['source'] == 'task' else 'request'}: {r['error_type']}": r["count"]
              for r in rows(api, token, "/v1/errors/top", recent_span(7))[:20]}
    assert errors and {r["label"]: int(r["value"]) for r in rects(browser, "errors-by-type")} == errors
    assert not browser.errors()


def test_the_admin_sees_vms_health_and_access_and_drills_from_a_department_to_a_tasks_raw_events(
        api: Api, browser: Browser) -> None:
    token = api.tokens[("admin", 0)]
    browser.login(api.url, token, "admin")
    span = recent_span(7)
    health = rects(browser, "pipeline-health")
    expected = {(r["topic"], "valid"): r["valid"] for r in rows(api, token, "/v1/pipeline/health", span)}
    assert expected and {(r["label"], r["series"]): int(r["value"]) for r in health
                         if r["series"] == "valid"} == expected
    vms = rects(browser, "vm-busy-hours")
    assert len(vms) == len(rows(api, token, "/v1/vms", span)) > 0
    assert rects(browser, "access-by-user") and browser.all("table[data-table=access] tbody tr")
    browser.shot("admin-overview")

    target = api.get(f"/v1/tasks/{api.lake_task}", token).json()["data"]["attempts"][0]  # the task the lake holds
    departments = rows(api, token, "/v1/usage", {"group_by": "department", "granularity": "day", **span})
    credits = sum(Decimal(r["credits"]) for r in departments if r["department_id"] == target["department_id"])
    cell = browser.wait(f"table[data-table=drill-department] button[data-drill='{target['department_id']}']")
    row_value = cell.find_element(By.XPATH, "../../td[@data-value]").get_attribute("data-value")
    assert Decimal(row_value) == credits  # the page's department total is the API's, to the last decimal
    for level, value in (("department", target["department_id"]), ("project", target["project_id"]),
                         ("user", target["user_id"])):
        browser.click(f"table[data-table=drill-{level}] button[data-drill='{value}']")
        browser.shot(f"admin-drill-{level}")
    browser.wait("svg[data-chart=drill-tasks]")
    browser.click(f"table[data-table=drill-tasks] button[data-drill='{api.lake_task}']")
    browser.wait("table[data-table=events] td[data-event]")
    browser.shot("admin-drill-task-events")
    shown = [c.text for c in browser.all("table[data-table=events] td[data-event]")]
    events = api.get(f"/v1/tasks/{api.lake_task}", token).json()["data"]["events"]
    assert shown and sorted(shown) == sorted(e["event_name"] for e in events)
    assert "xumi.task.finished" in shown
    assert not browser.errors()


def test_a_bad_token_is_refused_at_login_and_a_role_without_a_page_is_told_so(api: Api, browser: Browser) -> None:
    before = api.access_log_size()
    browser.driver.get(api.url + "/")
    browser.wait("input[name=token]")
    assert api.access_log_size() == before  # loading the page (no favicon request either) is not an API call
    browser.wait("input[name=token]").send_keys("tlm_nope_nope")
    browser.click("button[type=submit]")
    assert "401" in browser.wait("[data-status=login-error]").text
    assert browser.driver.execute_script("return sessionStorage.getItem('telemetry.token')") is None
    browser.login(api.url, api.tokens[("auditor", 0)], "auditor")
    assert "no page for the role" in browser.wait("main").text
    browser.shot("auditor")


def test_the_page_is_served_without_a_token_and_outside_the_access_log(api: Api) -> None:
    before = api.access_log_size()
    index = api.get("/", None)
    assert index.status_code == 200 and '<div id="root">' in index.text
    assert "script-src 'self'" in index.headers["content-security-policy"]  # the token's page runs its script only
    bundle = api.get("/app/app.js", None)
    assert bundle.status_code == 200 and bundle.headers["content-type"].startswith("text/javascript")
    for missing in ("/app/nothing.js", "/app/", "/app/..%2F..%2Fapp.py", "/app/%2e%2e/%2e%2e/app.py", "/app/a%00b",
                    "/app/" + "x" * 5000, "/app/%FF%FE", "/app//etc/passwd"):
        answer = api.get(missing, None)
        assert answer.status_code == 404 and answer.json()["code"] == "not-found", missing[:80]
    assert api.get("/v1/whoami", None).status_code == 401  # the API itself still wants a token
    assert api.access_log_size() == before + 1  # only the refused /v1 request is logged


def test_a_missing_build_is_a_clear_503_and_assets_stay_inside_the_build(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "DIST", tmp_path / "dist")
    answer = asyncio.run(web.index())
    assert answer.status_code == 503 and b"make deps" in answer.body and str(tmp_path).encode() in answer.body
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "app.js").write_text("x")
    (tmp_path / "secret.txt").write_text("s")
    (tmp_path / "dist" / "link.txt").symlink_to(tmp_path / "secret.txt")
    assert web.asset("app.js", tmp_path / "dist") == (tmp_path / "dist" / "app.js").resolve()
    for name in ("../secret.txt", "link.txt", "", ".", "/etc/passwd", "nothing.js", "a\x00b", "x" * 5000):
        assert web.asset(name, tmp_path / "dist") is None, name[:80]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["..", ".", "", "app.js", "dist", "~", "\x00", "%2e", "x" * 300, "/"]) | st.text(),
                max_size=6).map("/".join))
def test_generated_hostile_names_never_leave_the_build_nor_raise(name: str) -> None:
    found = web.asset(name)
    assert found is None or (found.is_file() and web.DIST.resolve() in found.parents), name[:80]
