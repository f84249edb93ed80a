"""The web page in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium): open it, upload test.wav, see the transcript stream in.

``scripts/bootstrap.sh`` installs the browser; without it this test fails (it is not
skipped) and says what to install. Set ``WHISPER_FINETUNE_SCREENSHOT=path.png`` to keep
a screenshot of the page with its transcript (the README's picture is made this way).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

INSTALL = "install it with scripts/bootstrap.sh (apt-get install chromium chromium-driver)"


def _browser(*extra: str):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[dev]'")
    binary = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
    )
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail(f"no Chromium (found browser={binary}, chromedriver={driver}): {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tempfile.mkdtemp(prefix="wf-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1100,600",
        f"--user-data-dir={profile}",
        *extra,
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options), profile


def test_page_uploads_and_streams_the_transcript(live_server, test_wav, cer):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, profile = _browser()
    try:
        browser.get(live_server.url + "/")
        assert browser.title == "whisper-finetune"
        wait = WebDriverWait(browser, 240, poll_frequency=0.2)
        wait.until(lambda b: "embedded:whisper-base" in b.find_element(By.ID, "model").text)
        browser.find_element(By.ID, "file").send_keys(str(test_wav))
        go = browser.find_element(By.ID, "go")
        assert go.is_enabled()
        go.click()
        wait.until(
            lambda b: b.find_element(By.ID, "status").text.startswith(("Done", "HTTP", "Error"))
        )
        status = browser.find_element(By.ID, "status").text
        assert status.startswith("Done: 8.4 s of audio"), status
        text = browser.find_element(By.ID, "transcript").text
        assert cer(text) <= 0.15, text
        assert "几年" in text  # "traditional -> simplified" is ticked by default
        rows = browser.find_elements(By.CSS_SELECTOR, "#segments li")
        assert rows and re.match(r"\d\d:\d\d\.\d → \d\d:\d\d\.\d", rows[0].text), rows[0].text
        assert browser.find_element(By.ID, "srt").is_enabled()
        srt = browser.execute_script("return toSrt();")
        assert srt.startswith("1\n00:00:0") and "-->" in srt
        shot = os.environ.get("WHISPER_FINETUNE_SCREENSHOT")
        if shot:
            Path(shot).parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(shot)
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert "POST /v1/audio/transcriptions 200 audio=8.39s" in live_server.log_text()


def test_page_records_from_the_microphone(live_server, test_wav, test_reference, cer):
    """Chromium's fake microphone plays test.wav; the page records it (MediaRecorder,
    webm/opus), uploads the recording and shows its transcript."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, profile = _browser(
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",  # grants the microphone without a prompt
        f"--use-file-for-fake-audio-capture={test_wav}",
    )
    log_start = len(live_server.log_text())
    try:
        browser.get(live_server.url + "/")
        wait = WebDriverWait(browser, 240, poll_frequency=0.2)
        browser.find_element(By.ID, "record").click()
        # the page's own recording clock: stop once all 8.4 s of test.wav were played
        wait.until(
            lambda b: re.fullmatch(
                r"recording (9|[1-9]\d) s", b.find_element(By.ID, "rectime").text
            )
        )
        browser.find_element(By.ID, "stop").click()
        wait.until(
            lambda b: b.find_element(By.ID, "status").text.startswith(("Done", "HTTP", "Micro"))
        )
        status = browser.find_element(By.ID, "status").text
        assert status.startswith("Done"), status
        text = browser.find_element(By.ID, "transcript").text
        # the fake microphone loops the file: compare the first pass with the reference
        assert (
            cer(text[: len(test_reference) + 10]) <= 0.15
            or cer(text[: len(test_reference)]) <= 0.15
        ), text
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
    # the recording (8.5 s or more, webm) was decoded by the server
    new_lines = live_server.log_text()[log_start:]
    assert re.search(
        r"POST /v1/audio/transcriptions 200 audio=(8\.[5-9]\d|9\.\d\d|\d\d\.\d\d)s", new_lines
    )


def test_page_live_transcription_from_the_microphone(live_server, test_wav, tmp_path, cer):
    """Chromium's fake microphone plays test.wav then silence; the Live button streams it
    over /v1/realtime; the item's tentative text shows while it plays, and its committed
    text appears before the stop button is pressed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from whisper_finetune.data.audio import load_audio, write_wav

    voice = tmp_path / "test-then-silence.wav"  # silence, so that the server VAD ends the turn
    write_wav(voice, np.concatenate([load_audio(test_wav), np.zeros(16000 * 4, np.float32)]))
    browser, profile = _browser(
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={voice}",
        "--autoplay-policy=no-user-gesture-required",
    )
    log_start = len(live_server.log_text())
    try:
        browser.get(live_server.url + "/")
        wait = WebDriverWait(browser, 240, poll_frequency=0.2)
        browser.find_element(By.ID, "live").click()
        # while test.wav plays, the item shows the model's tentative text (grey)
        shown = wait.until(lambda b: [t.text for t in b.find_elements(
            By.CSS_SELECTOR, "#segments li.live-item .tentative") if t.text])  # fmt: skip
        assert not browser.find_element(By.ID, "transcript").text, "tentative text came late"
        wait.until(lambda b: b.find_element(By.ID, "transcript").text
                   or b.find_element(By.ID, "status").get_attribute("class") == "error")  # fmt: skip
        assert browser.find_element(By.ID, "status").get_attribute("class") != "error", (
            browser.find_element(By.ID, "status").text)  # fmt: skip
        items = browser.find_elements(By.CSS_SELECTOR, "#segments li.live-item")
        first = items[0].text
        assert cer(first) <= 0.15 and "几年" in first, first
        assert not items[0].find_element(By.CSS_SELECTOR, ".tentative").text, shown
        browser.find_element(By.ID, "livestop").click()
        wait.until(lambda b: b.find_element(By.ID, "live").is_enabled())
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert re.search(r"WS /v1/realtime items=\d+ audio=", live_server.log_text()[log_start:])


def test_page_shows_server_errors(keyed_server, test_wav):
    """Without the key the page says why the server refused, and works once it is typed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, profile = _browser()
    try:
        browser.get(keyed_server.url + "/")
        wait = WebDriverWait(browser, 240, poll_frequency=0.2)
        browser.find_element(By.ID, "file").send_keys(str(test_wav))
        browser.find_element(By.ID, "go").click()
        wait.until(lambda b: b.find_element(By.ID, "status").text.startswith("HTTP 401"))
        assert "API key" in browser.find_element(By.ID, "status").text
        browser.find_element(By.ID, "apikey").send_keys(keyed_server.api_key)
        browser.find_element(By.ID, "go").click()
        wait.until(lambda b: b.find_element(By.ID, "status").text.startswith("Done"))
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
