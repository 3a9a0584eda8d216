"""The Dagster UI in a real browser: headless Chromium (Debian's chromium + chromium-driver) on `dagster dev`.

A small `agentic run` records a knowledge run in the Dagster instance under AGENTIC_HOME; `agentic ui`
serves it on 127.0.0.1. The browser must see the `knowledge` group's asset graph, a materialization
with its metadata (the index's rows and the documents per class), and the S3 sensor. Screenshots land
in test-artifacts/ (AGENTIC_TEST_ARTIFACTS).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.helpers import AGENTIC, free_port

ARTIFACTS = Path(os.environ.get("AGENTIC_TEST_ARTIFACTS", REPO / "test-artifacts"))


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "chromium/chromium-driver missing: `make setup` installs them (Debian packages)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1600,1000",
    ):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=opts)


def _wait_text(browser, texts: list[str], shot: str, timeout: float = 90) -> None:
    """Wait until every text is on the page; the screenshot is saved either way (a failure's evidence too)."""
    from selenium.webdriver.common.by import By

    def dismiss_dialog():
        for button in browser.find_elements(
            By.XPATH, "//button[normalize-space()='Skip']"
        ):  # first-visit newsletter dialog
            try:
                button.click()
            except Exception:
                pass

    deadline = time.time() + timeout
    while time.time() < deadline:
        dismiss_dialog()
        src = browser.page_source
        if all(t in src for t in texts):
            time.sleep(1.5)  # let the page finish laying out (and the dialog appear) before the picture
            dismiss_dialog()
            time.sleep(0.5)
            browser.save_screenshot(str(ARTIFACTS / shot))
            return
        time.sleep(0.5)
    browser.save_screenshot(str(ARTIFACTS / shot))
    missing = [t for t in texts if t not in browser.page_source]
    raise AssertionError(f"not on {browser.current_url} after {timeout:.0f} s: {missing}")


@pytest.mark.e2e
def test_dagster_ui_shows_graph_materialization_and_sensor(tmp_path, cli_home):
    env = cli_home.env  # a home whose first `agentic run` is recorded in its Dagster instance
    agentic = AGENTIC

    port = free_port()
    ui = subprocess.Popen(
        [agentic, "ui", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=open(tmp_path / "ui.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser = None
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            assert ui.poll() is None, (tmp_path / "ui.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        browser = _browser()

        browser.get(f"{base}/locations/agentic/asset-groups/knowledge")
        _wait_text(
            browser,
            [
                "document_inventory",
                "parsed_documents",
                "document_chunks",
                "chunk_embeddings",
                "_classifier",
                "document_classes",
                "vector_index",
            ],
            "ui-knowledge-graph.png",
        )  # long names are cut: "specia…_classifier"

        browser.get(f"{base}/assets/vector_index")
        _wait_text(browser, ["vector_index", "generation", "rows", "reclassified_documents"], "ui-vector-index.png")

        browser.get(f"{base}/assets/document_classes")
        _wait_text(browser, ["documents_per_class", "docs_neoplasms", "docs_cardiovascular"], "ui-document-classes.png")

        from selenium.webdriver.common.by import By

        browser.find_element(By.XPATH, "//button[normalize-space()='Plots']").click()  # numeric metadata across runs
        _wait_text(browser, ["docs_neoplasms", "docs_cardiovascular", "documents"], "ui-document-classes-plots.png")

        browser.get(f"{base}/locations/agentic/sensors/new_documents_sensor")
        _wait_text(browser, ["new_documents_sensor", "knowledge_job"], "ui-sensor.png")
    finally:
        if browser is not None:
            browser.quit()
        os.killpg(ui.pid, 15)
        try:
            ui.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, 9)
    for name in (
        "ui-knowledge-graph.png",
        "ui-vector-index.png",
        "ui-document-classes.png",
        "ui-document-classes-plots.png",
        "ui-sensor.png",
    ):
        assert (ARTIFACTS / name).stat().st_size > 10_000
