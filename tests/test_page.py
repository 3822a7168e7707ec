"""The browser captioning page in a real headless Chromium, against a real server on
127.0.0.1 with the shipped model.

Chromium's fake capture device plays a recording as the microphone, so "the page
shows the right captions" is checked the strong way: its finals must equal what
``demos/client.py`` gets for the same file from the same server (the server's
results do not depend on block sizes or pacing).  One browser serves the module;
each test loads the page afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from websockets.sync.client import connect as ws_connect

from client.audio_files import open_audio
from server import ServerConfig, SpeechServer
from streaming.recognizer import Engine

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's chromium + chromium-driver (scripts/setup.sh)
CHROMEDRIVER = "/usr/bin/chromedriver"
CLIPS = ["sense_and_sensibility_01_austen_64kb-0880.wav", "sense_and_sensibility_01_austen_64kb-0930.wav"]
SCREENSHOT = Path("/tmp/xlsr-page.png")
INSECURE_HOST = "captions.test"
RATE = 44100  # Chromium's fake microphone and headless audio output


class ServerThread:
    """A SpeechServer on its own event loop thread, so the test thread can drive a browser."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: SpeechServer | None = None
        self.port = 0

    def _call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, **config: Any) -> str:
        """Start (again: on the same port) and return the page's URL."""

        async def start() -> SpeechServer:
            server = SpeechServer(self.engine, ServerConfig(port=self.port, max_connections=2, **config))
            await server.start()
            return server

        self.server = self._call(start())
        self.port = self.server.port
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        if self.server is not None:
            self._call(self.server.shutdown())
            self.server = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def talk_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real utterances and a pause between, with silence before and after: several finals.

    At 44.1 kHz, the fake microphone's rate, so Chromium passes the samples through
    as they are and the page sends what demos/client.py reads from the file.
    """
    parts = [np.zeros(RATE // 2, np.float32)]
    for name in CLIPS:
        audio, rate = sf.read(REPO / "samples" / "librivox-dev" / name, dtype="float32")
        parts += [soxr.resample(audio, rate, RATE), np.zeros(RATE * 5 // 4, np.float32)]
    path = tmp_path_factory.mktemp("page") / "talk.wav"
    sf.write(path, np.clip(np.concatenate(parts), -1, 1), RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    engine = Engine.load(REPO / "models" / "en-small", threads=1)  # the shipped model and its LM
    thread = ServerThread(engine)
    thread.start()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


def launch(profile: Path, *flags: str) -> Any:
    """Headless Chromium, isolated and quiet: no network of its own, a fresh profile."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1100,760",
        *flags,
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def quit_showing_console(driver: Any) -> None:
    for entry in driver.get_log("browser"):  # the page's console, shown when a test fails
        print("console:", entry["level"], entry["message"])
    driver.quit()


@pytest.fixture(scope="module")
def browser(talk_wav: Path, downloads: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = launch(
        tmp_path_factory.mktemp("chromium-profile"),
        # A name for 127.0.0.1 that is not localhost: pages from it are not a secure context.
        f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1",
        "--use-fake-ui-for-media-stream",  # grant the microphone without a prompt
        "--use-fake-device-for-media-stream",
        # %noloop: the recording plays once, then the fake microphone hears silence.
        f"--use-file-for-fake-audio-capture={talk_wav}%noloop",
    )
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        quit_showing_console(driver)


def client(server: ServerThread, wav: Path) -> list[dict[str, Any]]:
    """The finals demos/client.py gets for a file from the server."""
    out = subprocess.run(
        [sys.executable, "-m", "demos.client", str(wav), "--url", f"ws://127.0.0.1:{server.port}",
         "--protocol", "native", "--speed", "0", "--json", "--no-partials"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )
    return [m for m in map(json.loads, out.stdout.splitlines()) if m["type"] == "final" and m["text"]]


@pytest.fixture(scope="module")
def client_finals(server: ServerThread, talk_wav: Path) -> list[dict[str, Any]]:
    finals = client(server, talk_wav)
    assert len(finals) >= 2, finals  # the pause between the clips ends a segment
    return finals


def wait_for(driver: Any, what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; status: {status(driver)!r}, "
                         f"state: {state(driver)!r}")


def status(driver: Any) -> str:
    return str(driver.find_element(By.ID, "status").text)


def state(driver: Any) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").get_attribute("data-state"))


def page_finals(driver: Any) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#finals li .text")]


def get(port: int, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_page_is_served_on_plain_gets_and_upgrades_still_work(server: ServerThread) -> None:
    page = get(server.port, "/")
    assert page.status == 200 and page.getheader("Content-Type") == "text/html; charset=utf-8"
    etag = page.getheader("ETag")
    assert etag and etag.startswith('"')
    assert get(server.port, "/", {"If-None-Match": f'"other", {etag}'}).status == 304
    assert get(server.port, "/", {"If-None-Match": '"other"'}).status == 200
    script = get(server.port, "/static/app.js")
    assert script.status == 200 and script.getheader("Content-Type", "").startswith("text/javascript")
    assert script.getheader("ETag") != etag
    assert get(server.port, "/static/missing.js").status == 404
    # A plain GET of the stream endpoint says whether an upgrade would be let in.
    assert get(server.port, "/v1/stream").status == 426
    # The root still speaks vosk to an upgrade.
    with ws_connect(f"ws://127.0.0.1:{server.port}/") as ws:
        ws.send(json.dumps({"config": {"sample_rate": 16000}}))
        ws.send(np.zeros(1600, np.int16).tobytes())
        assert "partial" in json.loads(ws.recv(10))
        ws.send('{"eof" : 1}')
        assert "text" in json.loads(ws.recv(10))


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    def seconds(stamp: str) -> float:
        h, m, rest = stamp.split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    cues = []
    for n, block in enumerate(text.strip().split("\n\n"), start=1):
        index, times, *lines = block.split("\n")
        assert index == str(n), block
        match = re.fullmatch(r"(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})", times)
        assert match, times
        cues.append((seconds(match[1]), seconds(match[2]), "\n".join(lines)))
    return cues


def download(driver: Any, folder: Path, kind: str, name: str) -> Path:
    path = folder / name
    path.unlink(missing_ok=True)
    driver.find_element(By.CSS_SELECTOR, f'[data-download="{kind}"]').click()
    wait_for(driver, f"download of {name}", lambda: path.exists() and path.stat().st_size > 0, timeout=20)
    return path


def test_file_captions_equal_client_and_download_as_srt(
    browser: Any, server: ServerThread, talk_wav: Path, downloads: Path, client_finals: list[dict[str, Any]]
) -> None:
    browser.get(server.url)
    browser.find_element(By.CSS_SELECTOR, 'input[name="pace"][value="fast"]').click()
    browser.find_element(By.ID, "file").send_keys(str(talk_wav))
    wait_for(browser, "the file's captions", lambda: "Captioned talk.wav" in status(browser))
    assert page_finals(browser) == [f["text"] for f in client_finals]

    cues = parse_srt(download(browser, downloads, "srt", "captions.srt").read_text("utf-8"))
    assert [text for _, _, text in cues] == [f["text"] for f in client_finals]
    for (start, end, _), final in zip(cues, client_finals):
        assert start < end and abs(start - final["start"]) < 1e-3 and abs(end - final["end"]) < 1e-3
    assert all(later[0] >= earlier[1] for earlier, later in zip(cues, cues[1:])), cues  # increasing
    vtt = download(browser, downloads, "vtt", "captions.vtt").read_text("utf-8")
    assert vtt.startswith("WEBVTT\n\n00:00:") and client_finals[-1]["text"] in vtt
    text = download(browser, downloads, "txt", "captions.txt").read_text("utf-8")
    assert text.splitlines() == [f["text"] for f in client_finals]


def test_microphone_captions_equal_client(
    browser: Any, server: ServerThread, talk_wav: Path, downloads: Path, tmp_path: Path
) -> None:
    played = open_audio(talk_wav).read()
    browser.get(server.url)
    started = time.monotonic()
    browser.find_element(By.ID, "start").click()
    wait_for(browser, "the stream to start", lambda: state(browser) == "live", timeout=20)
    # The level meter moves; partials show their stable prefix apart from the tail.
    levels: list[float] = []
    partials: list[tuple[str, str]] = []

    def heard_all() -> bool:
        levels.append(float(browser.find_element(By.ID, "meter").get_attribute("aria-valuenow")))
        stable = browser.find_element(By.CSS_SELECTOR, "#partial .stable").text
        tail = browser.find_element(By.CSS_SELECTOR, "#partial .tail").text
        if stable or tail:
            partials.append((stable, tail))
            if page_finals(browser) and not SCREENSHOT.exists():
                browser.save_screenshot(str(SCREENSHOT))
        # Some captions, and the whole recording played (the fake microphone plays in real time).
        return bool(page_finals(browser)) and time.monotonic() - started > len(played) / RATE + 1

    SCREENSHOT.unlink(missing_ok=True)
    wait_for(browser, "captions of the whole recording", heard_all, timeout=60)
    assert re.fullmatch(r"latency \d+ ms \(median \d+ ms\)", browser.find_element(By.ID, "latency").text)
    browser.find_element(By.ID, "stop").click()
    wait_for(browser, "the stream to finish", lambda: state(browser) == "idle", timeout=30)
    assert max(levels) > 0.05, levels
    assert partials, "no partial was shown"
    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    if not SCREENSHOT.exists():
        browser.save_screenshot(str(SCREENSHOT))
    print(f"screenshot: {shot} (with a live partial: {SCREENSHOT})")
    assert shot.stat().st_size > 10_000

    # What the page sent (its Audio download) is the recording at the fake microphone's
    # rate with no gain or processing (the page turns those off).  Not sample for sample:
    # Chromium's fake capture starts a few ms into it and, on a loaded machine, fills a
    # late 10 ms buffer with silence.
    download(browser, downloads, "wav", "captions-audio.wav")
    recording = open_audio(downloads / "captions-audio.wav")
    sent = recording.read()
    assert recording.sample_rate == RATE and len(sent) > len(played) - RATE // 2
    speech_rms = [float(np.sqrt(np.mean(x[np.flatnonzero(x)[0] :][: len(played) // 2] ** 2.0))) for x in (sent, played)]
    assert abs(speech_rms[0] / speech_rms[1] - 1) < 0.1, speech_rms
    # So the page's finals are the server's for that audio, as demos/client.py gets them.
    # (Not always the whole file's: a few ms of shift or a filled gap move the model's
    # windows against the speech, and this small model then hears a word or two apart.)
    assert page_finals(browser) == [f["text"] for f in client(server, downloads / "captions-audio.wav")]


def test_denied_or_missing_microphone_insecure_page_full_server_lost_server_and_token_are_told(
    browser: Any, server: ServerThread, tmp_path: Path
) -> None:
    # Permission denied (the user said no to the prompt), and no microphone at all.
    for flags, message in (
        (("--use-fake-ui-for-media-stream=deny", "--use-fake-device-for-media-stream"), "permission was denied"),
        (("--use-fake-ui-for-media-stream",), "No microphone was found"),
    ):
        other = launch(tmp_path / message.replace(" ", "-"), *flags)
        try:
            other.get(server.url)
            other.find_element(By.ID, "start").click()
            wait_for(other, repr(message), lambda: message in status(other), timeout=20)  # noqa: B023
            assert state(other) == "idle"
        finally:
            quit_showing_console(other)

    # A plain-http page from another host than localhost: no microphone, and how to get it.
    browser.get(f"http://{INSECURE_HOST}:{server.port}/")
    wait_for(browser, "the insecure-context message", lambda: "--certfile" in status(browser), timeout=20)
    assert "https://" in status(browser) and not browser.find_element(By.ID, "start").is_enabled()

    # Server full: 503 + Retry-After, retried after that long.
    with contextlib.ExitStack() as held:
        for _ in range(2):
            held.enter_context(ws_connect(f"ws://127.0.0.1:{server.port}/v1/stream"))
        browser.get(server.url)
        browser.find_element(By.ID, "start").click()
        message = wait_for(browser, "the server-full message",
                           lambda: "Retrying in" in status(browser) and status(browser))
        assert "limit of 2 connections" in message and "Retrying in 5 s" in message, message
    wait_for(browser, "the retry to get in", lambda: state(browser) == "live", timeout=20)

    # Server gone: its finals stay, the page reconnects with backoff and carries on.
    wait_for(browser, "a final", lambda: page_finals(browser), timeout=60)
    server.stop()
    wait_for(browser, "the lost-server message", lambda: "Cannot reach the server" in status(browser), timeout=30)
    shown = page_finals(browser)
    assert shown and "Captions so far are kept" in status(browser)
    server.start()
    wait_for(browser, "the reconnect", lambda: state(browser) == "live" and "Reconnected" in status(browser))
    assert page_finals(browser)[: len(shown)] == shown
    browser.find_element(By.ID, "stop").click()
    wait_for(browser, "the stream to finish", lambda: state(browser) == "idle", timeout=30)

    # A server that needs a token: the page says how to give it one, and ?token= works.
    server.stop()
    server.start(auth_token="page-test-token")
    try:
        browser.get(server.url)
        browser.find_element(By.ID, "start").click()
        wait_for(browser, "the token message", lambda: "needs an access token" in status(browser), timeout=20)
        assert state(browser) == "idle" and "?token=YOUR_TOKEN" in status(browser)
        browser.get(server.url + "?token=page-test-token")
        browser.find_element(By.ID, "start").click()
        wait_for(browser, "the stream to start with the token", lambda: state(browser) == "live", timeout=20)
        browser.find_element(By.ID, "stop").click()
        wait_for(browser, "the stream to finish", lambda: state(browser) == "idle", timeout=30)
    finally:
        server.stop()
        server.start()
