"""``xas serve`` in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven
by Selenium): upload docs/examples/CuO.cif through the page and wait for the Plotly trace,
then upload a bad file and see the error on the page. Without Chromium the test skips, except
under ``CI=true`` (``.ci/run`` installs it), where it fails."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
from xas_testkit import Background, http_ok, wait_for

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: browser waits (s): generous, a loaded 2-core machine makes them slower, not red
WAIT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        msg = f"{CHROMIUM} / {CHROMEDRIVER} missing: apt-get install chromium chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    xas = Path(sys.executable).parent / "xas"
    cmd = [xas, "serve", "--port", str(port), "--zoo", ROOT / "model-zoo"]
    with Background(cmd, tmp_path / "serve.log") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_for(http_ok(f"{url}/health"), "xas serve to answer /health", process=proc)
        yield url


def test_upload_cif_plots_and_bad_file_shows_error(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    t0 = time.perf_counter()
    browser.get(server + "/")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-models-loaded"))
    print(f"page loaded with the model list in {time.perf_counter() - t0:.2f} s")
    browser.find_element(By.ID, "structure-file").send_keys(str(ROOT / "docs/examples/CuO.cif"))
    t0 = time.perf_counter()
    browser.find_element(By.ID, "predict-btn").click()
    trace = wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, '#plot-0[data-rendered="true"] g.trace'))
    )
    print(f"CuO prediction plotted in {time.perf_counter() - t0:.2f} s")
    assert trace.is_displayed()
    assert "CuO" in browser.find_element(By.ID, "plot-0").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#edge-table tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[3].text for r in rows] == ["0", "average"]
    body = browser.find_element(By.TAG_NAME, "body")
    wait.until(lambda d: body.get_attribute("data-predict-state") == "done")  # card shown last
    assert browser.find_element(By.ID, "model-card").text.startswith("#")

    bad = tmp_path / "bad.cif"
    bad.write_bytes(bytes(range(256)))
    browser.find_element(By.ID, "structure-file").send_keys(str(bad))
    browser.find_element(By.ID, "predict-btn").click()
    wait.until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-predict-state") == "error"
    )
    assert "binary" in browser.find_element(By.ID, "predict-error").text
