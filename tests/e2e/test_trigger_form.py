"""The trigger form of ``cognito_migration`` in a real browser, served by the real api-server.

Headless Chromium (Debian's package) opens the DAG page as a signed-in user, opens the trigger form, and checks
that every section and field the DAG's params define is rendered, section by section; each is saved as a
screenshot in var/artifacts/e2e/ for a person to look at.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from cognito_migration.params import MigrationParams
from tests.e2e.browser import BrowserError, HeadlessChromium
from tests.e2e.cluster import AirflowApi, AirflowCluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DAG_ID = "cognito_migration"
# Every stage task of the wiring contract (docs: the pipeline's task ids, in order).
STAGE_TASKS = (
    "preflight",
    "extract",
    "memberships",
    "convert",
    "dry_run",
    "gate",
    "import_batch",
    "send_emails",
    "report",
    "cutover_kit",
)


def test_dag_wires_every_stage(api: AirflowApi) -> None:
    api.wait_for_dag(DAG_ID)
    missing = [t for t in STAGE_TASKS if t not in api.tasks(DAG_ID)]
    assert not missing, f"the DAG does not wire {missing}: the e2e checks of those stages would not run"


# ---- the trigger form in a real browser ------------------------------------------------------------------------

DIALOG = "[...document.querySelectorAll('[role=dialog]')].find(d => d.innerText.includes('Trigger Dag'))"
SECTION_TRIGGERS = f"{DIALOG}.querySelectorAll('[data-scope=accordion][data-part=item-trigger]')"
OPEN_SECTION = f"{DIALOG}.querySelector('[data-part=item][data-state=open] [data-part=item-content]')"


def _click(browser: HeadlessChromium, element: str) -> None:
    """A real mouse click at the element's centre: the form's accordion reacts to pointer events, not .click()."""
    box = browser.evaluate(
        f"(() => {{ const e = {element}; e.scrollIntoView({{block: 'center'}}); return e.getBoundingClientRect().toJSON(); }})()"
    )
    x, y = box["x"] + min(30, box["width"] / 2), box["y"] + box["height"] / 2
    for kind in ("mousePressed", "mouseReleased"):
        browser.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _open_trigger_form(browser: HeadlessChromium, cluster: AirflowCluster, api: AirflowApi) -> None:
    browser.send("Network.enable")
    browser.set_cookie("_token", api.token, cluster.base_url)
    browser.navigate(f"{cluster.base_url}/dags/{DAG_ID}")
    trigger = "[...document.querySelectorAll('button')].find(b => b.getAttribute('aria-label') === 'Trigger Dag')"
    browser.wait_for(f"!!({trigger})", 90, "the DAG page's Trigger button")
    _click(browser, trigger)
    browser.wait_for(f"!!({DIALOG}) && {SECTION_TRIGGERS}.length > 0", 60, "the trigger form")


@pytest.mark.timeout(600)
def test_trigger_form_renders_every_section_and_field(
    cluster: AirflowCluster, api: AirflowApi, chromium: str, artifacts: Path
) -> None:
    details = api.wait_for_dag(DAG_ID)
    params = details["params"]
    assert set(params) == set(MigrationParams.model_fields), "the DAG's params and the form model differ"
    sections: dict[str, list[str]] = {}
    for param in params.values():
        sections.setdefault(param["schema"]["section"], []).append(param["schema"]["title"])

    with HeadlessChromium(chromium, width=1400, height=1100) as browser:
        try:
            _open_trigger_form(browser, cluster, api)
            browser.screenshot(artifacts / "trigger-form.png")
            headers = browser.evaluate(f"[...{SECTION_TRIGGERS}].map(t => t.innerText.trim())")
            assert headers[: len(sections)] == list(sections), f"form sections {headers}, params say {list(sections)}"
            for index, (section, titles) in enumerate(sections.items()):
                _click(browser, f"{SECTION_TRIGGERS}[{index}]")
                browser.wait_for(
                    f"{SECTION_TRIGGERS}[{index}].getAttribute('aria-expanded') === 'true' && !!({OPEN_SECTION})",
                    20,
                    f"section {section!r} to open",
                )
                labels = browser.evaluate(
                    f"[...{OPEN_SECTION}.querySelectorAll('label[data-part=label]')]"
                    ".map(l => l.innerText.replace('*', '').trim())"
                )
                assert labels == titles, f"section {section!r} shows {labels}, expected {titles}"
                time.sleep(0.6)  # let the previous section's closing animation finish before the picture
                browser.screenshot(artifacts / f"trigger-form-{index + 1:02d}-{_slug(section)}.png")
        except BrowserError:
            browser.screenshot(artifacts / "trigger-form-failure.png")
            raise


@pytest.mark.timeout(600)
def test_trigger_form_accepts_a_pool_id_and_enables_trigger(
    cluster: AirflowCluster, api: AirflowApi, chromium: str, artifacts: Path
) -> None:
    api.wait_for_dag(DAG_ID)
    with HeadlessChromium(chromium, width=1400, height=1100) as browser:
        _open_trigger_form(browser, cluster, api)
        _click(browser, f"{SECTION_TRIGGERS}[0]")
        field = f"{DIALOG}.querySelector('#element_user_pool_id')"
        browser.wait_for(f"!!({field})", 20, "the user pool id field")
        _click(browser, field)
        browser.send("Input.insertText", {"text": "us-east-1_AbCdEf123"})
        browser.wait_for(f"{field}.value === 'us-east-1_AbCdEf123'", 10, "the typed pool id")
        submit = f"[...{DIALOG}.querySelectorAll('button')].filter(b => b.innerText.trim() === 'Trigger').pop()"
        time.sleep(1)
        flagged = browser.evaluate(
            f"[...{SECTION_TRIGGERS}].filter(t => t.querySelector('.chakra-stack svg')).map(t => t.innerText.trim())"
        )
        browser.screenshot(artifacts / "trigger-form-filled.png")
        assert not browser.evaluate(f"{submit}.disabled"), f"Trigger stays disabled; sections with errors: {flagged}"
