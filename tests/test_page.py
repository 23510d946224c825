"""``predict --html``: the page's content, and the page in a real headless Chromium (Debian's chromium +
chromium-driver, driven by Selenium): the chart is drawn, seeking the video moves the cursor, clicking the chart
seeks the video, no console errors. The browser test skips where no Chromium is installed, and fails under CI
(whose `make test` installs it where it can: see the Makefile)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shareddata import in_ci
from test_face_onnx import _tiny_model

from avaffect.cli.main import main
from avaffect.evaluation.page import page_html, write_page

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or \
    "/usr/bin/chromedriver"


def _frame(n=50, fps=10.0):
    t = np.arange(n) / fps
    face = np.ones(n, bool)
    face[10:20] = False
    v = np.sin(t)
    v[~face] = np.nan
    return pd.DataFrame({"time": t, "valence": v, "arousal": np.cos(t), "face_detected": face})


def _data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="avaffect-data">(.*?)</script>', page, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_page_carries_the_traces_the_face_mask_and_the_meaning():
    frame = _frame()
    summary = {"trained_on": "synthetic", "meaning": "SYNTHETIC DEMO MODEL: <not> real", "frames": 50,
               "face_fraction": 0.8, "warnings": ["a </script> warning"], "model": "rjca"}
    page = page_html(frame, summary, "clip.mp4", "my <clip>")
    data = _data(page)
    assert data["time"][:3] == [0.0, 0.1, 0.2] and data["face"][10:20] == [False] * 10
    assert data["valence"][10] is None and data["valence"][1] == pytest.approx(np.sin(0.1), abs=1e-5)
    assert "class=\"meaning synthetic\"" in page and "&lt;not&gt;" in page and "my &lt;clip&gt;" in page
    assert page.count("</script>") == 2  # nothing in the data or summary closes a script early


def test_a_video_over_the_embed_limit_is_linked_not_embedded(tmp_path):
    video = tmp_path / "clip_overlay.mp4"
    video.write_bytes(b"\0" * 2000)
    path, embedded = write_page(tmp_path / "clip.html", _frame(), {}, video, "clip", embed_limit_mb=0.001)
    assert not embedded and 'src="clip_overlay.mp4"' in path.read_text() and "keep the two files" in path.read_text()
    path, embedded = write_page(tmp_path / "clip.html", _frame(), {}, video, "clip")
    assert embedded and "data:video/mp4;base64," in path.read_text()


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        msg = f"no Chromium at {CHROMIUM} / {CHROMEDRIVER} (Debian: apt-get install chromium chromium-driver)"
        if in_ci():
            pytest.fail(msg + ": CI must run the page test")
        pytest.skip(msg)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
              "--disable-quic"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def _wait(driver, script: str, timeout: float = 20.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(script))


@pytest.mark.slow
def test_the_page_in_headless_chromium(browser, crema_d, tmp_path):
    clip = sorted(crema_d.glob("*.flv"))[0]
    out = tmp_path / "pred"
    model = _tiny_model(tmp_path / "va.onnx")
    assert main(["predict", "--face-model", str(model), str(clip), str(sorted(crema_d.glob("*.flv"))[1]),
                 "--out", str(out), "--html"]) == 0
    page = out / f"{clip.stem}.html"
    assert page.is_file() and (out / "index.html").is_file()
    assert not (out / f"{clip.stem}_overlay.mp4").exists()  # embedded, not asked for: not kept
    csv = pd.read_csv(out / f"{clip.stem}.csv")
    browser.get(page.as_uri())
    _wait(browser, "return document.getElementById('chart').getAttribute('data-ready') === '1'")
    # the chart is drawn: one trace per target, with a point per frame that has a value
    n_points = browser.execute_script(
        "return Array.from(document.querySelectorAll('polyline.valence')).map(p => p.points.numberOfItems)"
        ".reduce((a, b) => a + b, 0)")
    assert n_points == int(csv["valence"].notna().sum()) > 0
    assert browser.execute_script("return document.querySelectorAll('polyline.arousal').length") >= 1
    # the embedded video plays in this browser: its duration is the clip's
    _wait(browser, "return document.getElementById('video').readyState >= 1")
    duration = browser.execute_script("return document.getElementById('video').duration")
    assert duration == pytest.approx(csv["time"].iloc[-1], abs=0.2)
    # seeking the video moves the cursor to that time on the chart's axis
    xs = []
    for t in (0.4, 1.2):
        browser.execute_script(f"document.getElementById('video').currentTime = {t};")
        _wait(browser, f"const v = document.getElementById('video'); return !v.seeking && Math.abs(v.currentTime - "
                       f"{t}) < 0.05")
        _wait(browser, "return document.getElementById('readout').textContent.indexOf('t = ') === 0")
        xs.append(float(browser.execute_script("return document.getElementById('cursor').getAttribute('x1')")))
    t0, t1 = csv["time"].iloc[0], csv["time"].iloc[-1]
    expect = [40 + (t - t0) / (t1 - t0) * 950 for t in (0.4, 1.2)]
    assert xs == pytest.approx(expect, abs=3.0)
    assert "t = 1.20 s" in browser.find_element("id", "readout").text
    # clicking the chart seeks the video
    chart = browser.find_element("id", "chart")
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).move_to_element_with_offset(chart, 0, 0).click().perform()  # the chart's centre
    _wait(browser, "return Math.abs(document.getElementById('video').currentTime - 1.2) > 0.1")
    mid_t = t0 + ((500 - 40) / 950) * (t1 - t0)
    assert browser.execute_script("return document.getElementById('video').currentTime") == pytest.approx(mid_t,
                                                                                                        abs=0.15)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    browser.get((out / "index.html").as_uri())
    assert len(browser.find_elements("css selector", "a")) == 2


def test_a_page_of_several_people_draws_each_persons_traces(browser, tmp_path):
    """``predict --faces all --html``: one valence (solid) and one arousal (dashed) trace per person, in the person's
    colour, a readout with every person's values, drawn by the page's own script without errors."""
    t = np.round(np.arange(40) * 0.1, 3)
    anybody = pd.DataFrame({"time": t, "face_detected": np.ones(40, bool)})
    people = [pd.DataFrame({"time": t, "valence": np.sin(t + k), "arousal": np.cos(t + k),
                            "face_detected": np.arange(40) < 30 + 10 * k}) for k in range(2)]
    page = tmp_path / "people.html"
    page.write_text(page_html(anybody, {}, "data:,", "two people", people=people))
    browser.get(page.as_uri())
    _wait(browser, "return document.getElementById('chart').getAttribute('data-ready') === '1'")
    for k in (1, 2):
        assert browser.execute_script(f"return document.querySelectorAll('polyline.p{k}.valence').length") == 1
        dashed = browser.execute_script(f"return document.querySelector('polyline.p{k}.arousal')"
                                        ".getAttribute('stroke-dasharray')")
        assert dashed == "5,3"
    # person 1 has no face after 3 s: no value there, so its valence line stops at 2.9 s
    assert browser.execute_script("return document.querySelector('polyline.p1.valence').points.numberOfItems") == 30
    readout = browser.find_element("id", "readout").text
    assert "p1 valence" in readout and "p2 arousal" in readout
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
