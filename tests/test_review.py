"""`roadwork review` as a user meets it: a capture folder made by a real `roadwork serve --capture`
run, the review server started as a command, the page driven by keyboard in a real headless
Chromium (Debian's chromium + chromium-driver, through selenium), labels.csv then fed to
`roadwork train --smoke`. The API's refusals, several reviewers at once and `/review` on the
serving process are checked against real servers on loopback too.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from _serve_helpers import ThreadedServer, free_port, validator_jpeg
from conftest import EXAMPLES
from roadwork.review import create_review_app
from roadwork.review.store import COLUMNS, ReviewStore
from roadwork.serve.capture import read_index
from test_heatmap import locmap_dir  # noqa: F401  (a fixture: a tiny model with a location map)

pytestmark = pytest.mark.timeout(300)
SHOTS = os.environ.get("ROADWORK_SCREENSHOT_DIR")  # set to save the page's screenshot (docs/review.png)
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,860")


def _roadwork(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "roadwork.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < end, f"{url} never answered 200"
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def _uploads() -> list[bytes]:
    """Three street frames as a validator sends them, plus three noise images (all distinct bytes)."""
    shots = [validator_jpeg(Image.open(p)) for p in sorted(EXAMPLES.glob("*.jpg"))]
    rng = np.random.default_rng(1)
    for i in range(3):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(buf, format="PNG")
        shots.append(buf.getvalue())
    return shots


@pytest.fixture(scope="module")
def served_capture(tiny_vit_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A capture folder written by `roadwork serve --capture` (everything is uncertain: the tiny
    random model answers near 0.5), checked through the server's own /review first."""
    cap = tmp_path_factory.mktemp("capture")
    port = free_port()
    proc = _roadwork("serve", "--model", str(tiny_vit_dir), "--port", str(port), "--capture", str(cap))
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/readyz", proc)
        files = [("files", (f"{i}.img", b, "application/octet-stream")) for i, b in enumerate(_uploads())]
        r = httpx.post(f"{url}/v1/predict", files=files, timeout=60)
        assert r.status_code == 200, r.text
        # /review on the serving process sees the rows still buffered in memory (it flushes first)
        info = httpx.get(f"{url}/review/api/info", timeout=30).json()
        assert info["total"] == 6 and info["sources"] == ["http"] and info["labelled"] == 0
        page = httpx.get(f"{url}/review/", timeout=30)
        assert page.status_code == 200 and "roadwork review" in page.text
    finally:
        out = _stop(proc)
    assert proc.returncode in (0, 130), out  # uvicorn re-raises the Ctrl-C after a clean shutdown
    assert "Traceback" not in out
    assert read_index(cap).num_rows == 6
    return cap


@pytest.fixture
def capture_copy(served_capture: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "cap"
    shutil.copytree(served_capture, dst)
    return dst


@pytest.fixture
def review_server(capture_copy: Path):
    with ThreadedServer(create_review_app(capture_copy)) as srv:
        srv.root = capture_copy
        yield srv


def _labels(root: Path) -> dict[str, dict[str, str]]:
    with (root / "labels.csv").open(newline="") as f:
        return {r["sha256"]: r for r in csv.DictReader(f)}


# ---- the API --------------------------------------------------------------------------------------
def test_items_come_most_uncertain_first_with_working_filters(review_server):
    items = httpx.get(f"{review_server.url}/api/items").json()["items"]
    assert len(items) == 6
    dist = [abs(i["prob"] - 0.5) for i in items]
    assert dist == sorted(dist)
    day, tier = items[0]["day"], items[0]["tier"]
    assert httpx.get(f"{review_server.url}/api/items", params={"day": day, "tier": tier}).json()["total"] == 6
    assert httpx.get(f"{review_server.url}/api/items", params={"day": "1999-01-01"}).json()["total"] == 0
    assert httpx.get(f"{review_server.url}/api/items", params={"tier": "nope"}).json()["total"] == 0
    lo = sorted(i["prob"] for i in items)[2]
    band = httpx.get(f"{review_server.url}/api/items", params={"pmin": lo, "pmax": 1}).json()["items"]
    assert {i["id"] for i in band} == {i["id"] for i in items if i["prob"] >= lo}
    [file] = (review_server.root / "images").glob(f"{items[0]['id']}.*")
    assert httpx.get(f"{review_server.url}/api/images/{items[0]['id']}").content == file.read_bytes()


@pytest.mark.parametrize("method,path,body,status", [
    ("GET", "/api/images/" + "0" * 64, None, 404),                      # well-formed, not captured
    ("GET", "/api/images/..%2F..%2Fetc%2Fpasswd", None, 404),           # traversal never reaches a file
    ("GET", "/api/images/..", None, 404),
    ("GET", "/api/images/%2e%2e%2flabels.csv", None, 404),
    ("PUT", "/api/labels/ID", {"label": "maybe"}, 422),                 # malformed labels
    ("PUT", "/api/labels/ID", {"label": 1}, 422),
    ("PUT", "/api/labels/ID", {}, 422),
    ("PUT", "/api/labels/" + "f" * 64, {"label": "none"}, 404),
    ("PUT", "/api/labels/ID", {"label": "none", "reviewer": "x" * 65}, 422),
    ("DELETE", "/api/labels/../labels.csv", None, 404),
    ("GET", "/api/items?pmin=1.5", None, 422),
    ("GET", "/api/items?pmin=0.8&pmax=0.2", None, 422),
    ("GET", "/api/items?day=yesterday", None, 422),
    ("GET", "/api/items?status=maybe", None, 422),
    ("GET", "/static/review.html", None, 422),
])
def test_bad_requests_are_4xx_and_write_nothing(review_server, method, path, body, status):
    some_id = httpx.get(f"{review_server.url}/api/items").json()["items"][0]["id"]
    r = httpx.request(method, review_server.url + path.replace("ID", some_id), json=body)
    assert r.status_code == status, r.text
    assert not (review_server.root / "labels.csv").exists()


def test_a_label_without_a_json_body_is_refused(review_server):
    """A form post from another site (text/plain, no CORS preflight) cannot label."""
    some_id = httpx.get(f"{review_server.url}/api/items").json()["items"][0]["id"]
    r = httpx.put(f"{review_server.url}/api/labels/{some_id}", content=b'{"label": "none"}',
                  headers={"content-type": "text/plain"})
    assert r.status_code == 422 and not (review_server.root / "labels.csv").exists()


def test_labels_are_a_manifest_row_each_and_undo_removes_them(review_server):
    items = httpx.get(f"{review_server.url}/api/items").json()["items"]
    a, b = items[0]["id"], items[1]["id"]
    assert httpx.put(f"{review_server.url}/api/labels/{a}", json={"label": "roadwork", "reviewer": "ann"}).status_code == 200
    assert httpx.put(f"{review_server.url}/api/labels/{b}", json={"label": "none"}).status_code == 200
    rows = _labels(review_server.root)
    assert set(rows) == {a, b}
    assert list(rows[a]) == list(COLUMNS)
    assert rows[a]["label"] == "1" and rows[b]["label"] == "0" and rows[a]["reviewer"] == "ann"
    assert rows[a]["path"].startswith(f"images/{a}.") and rows[a]["group"] == f"{items[0]['day']}/http"
    assert rows[a]["source"] == "capture-http"
    assert httpx.get(f"{review_server.url}/api/items", params={"status": "unlabelled"}).json()["total"] == 4
    assert httpx.put(f"{review_server.url}/api/labels/{a}", json={"label": "none"}).status_code == 200  # relabel
    assert httpx.delete(f"{review_server.url}/api/labels/{b}").json() == {"id": b, "removed": True}
    assert {k: r["label"] for k, r in _labels(review_server.root).items()} == {a: "0"}
    assert not [p for p in review_server.root.iterdir() if p.name.endswith(".tmp")]  # no temp files left


def test_the_page_is_locked_down(review_server):
    r = httpx.get(f"{review_server.url}/")
    assert "script-src 'self'" in r.headers["content-security-policy"] and r.headers["x-content-type-options"] == "nosniff"
    js = httpx.get(f"{review_server.url}/static/review.js").text
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js


def test_an_api_key_guards_the_page_and_the_api(capture_copy):
    with ThreadedServer(create_review_app(capture_copy, api_key="k3y")) as srv:
        assert httpx.get(f"{srv.url}/api/info").status_code == 401
        assert httpx.get(f"{srv.url}/").status_code == 401
        assert httpx.get(f"{srv.url}/?key=wrong").status_code == 401
        assert httpx.get(f"{srv.url}/api/info", headers={"X-API-Key": "k3y"}).status_code == 200
        with httpx.Client(base_url=srv.url) as client:  # the browser's way: ?key= once, then a cookie
            r = client.get("/?key=k3y", follow_redirects=True)
            assert r.status_code == 200 and "key=" not in str(r.url)
            assert client.get("/api/info").json()["total"] == 6


def _label_many(root: str, ids: list[str], label: str) -> None:
    store = ReviewStore(root)
    for i in ids:
        store.set_label(i, label)


def test_several_reviewers_on_one_folder_lose_nothing(capture_copy):
    """Two processes label at the same time, each through its own store: every label survives."""
    ids = list(ReviewStore(capture_copy).items())
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_label_many, args=(str(capture_copy), ids[k::2] * 5, lab))
             for k, lab in ((0, "roadwork"), (1, "none"))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = _labels(capture_copy)
    assert {k: r["label"] for k, r in rows.items()} == {i: "1" if n % 2 == 0 else "0" for n, i in enumerate(ids)}


def test_review_refuses_a_folder_that_is_not_a_capture(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "roadwork.cli", "review", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    said = " ".join(proc.stderr.split())  # rich wraps long lines
    assert proc.returncode == 2 and "not a capture folder" in said and "Traceback" not in said


def _engine(model: Path):
    from roadwork.config import shell_config
    from roadwork.engine import Engine

    return Engine.from_config(shell_config(None, str(model)))


def test_the_overlay_is_the_models_location_map_over_the_image(capture_copy, locmap_dir, tiny_vit_dir):
    """A model with a location map (a locmap folder, as `roadwork review --model` loads it): each
    captured image's overlay is a PNG of the image's own size, exactly `blend(image, its map)`. A
    model without one gives no overlay function, and the endpoint answers 404."""
    from roadwork.heatmap import blend
    from roadwork.review.overlay import engine_overlay

    engine = _engine(locmap_dir)
    located = engine_overlay(engine)
    assert located is not None and engine_overlay(_engine(tiny_vit_dir)) is None
    store = ReviewStore(capture_copy)
    ids = list(store.items())
    assert len(ids) == 6
    with ThreadedServer(create_review_app(capture_copy, overlay=located)) as srv:
        assert httpx.get(f"{srv.url}/api/info").json()["overlay"] is True
        for i in ids:
            r = httpx.get(f"{srv.url}/api/images/{i}/overlay", timeout=60)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            assert r.content.startswith(b"\x89PNG\r\n\x1a\n")
            drawn = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
            with Image.open(store.image_path(i)) as im:
                plain = im.convert("RGB")
            assert drawn.shape == (plain.height, plain.width, 3)
            want = np.asarray(blend(plain, engine.location_map(plain)))
            np.testing.assert_array_equal(drawn, want)
            assert not np.array_equal(drawn, np.asarray(plain))  # the map is drawn, not the plain photo
        assert httpx.get(f"{srv.url}/api/images/{'0' * 64}/overlay").status_code == 404
        assert httpx.get(f"{srv.url}/api/images/..%2Findex/overlay").status_code in (404, 422)
    with ThreadedServer(create_review_app(capture_copy, overlay=engine_overlay(_engine(tiny_vit_dir)))) as srv:
        assert httpx.get(f"{srv.url}/api/info").json()["overlay"] is False
        r = httpx.get(f"{srv.url}/api/images/{ids[0]}/overlay")
        assert r.status_code == 404 and "no location map" in r.json()["detail"]


# ---- the user's path: browser, keyboard, reload, train -------------------------------------------
def _browser(tmp_path: Path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chrome-profile'}")  # a new empty profile: no first-run waits
    return webdriver.Chrome(options=opts, service=Service(executable_path=driver_bin))


def _table_labels(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [tr.find_elements(By.TAG_NAME, "td")[5].text for tr in driver.find_elements(By.CSS_SELECTOR, "#list tbody tr")]


@pytest.mark.slow
def test_label_three_images_by_keyboard_reload_and_train(capture_copy, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    server = _roadwork("review", str(capture_copy), "--port", str(port))
    url = f"http://127.0.0.1:{port}/"
    driver = None
    try:
        _wait_http(url, server)
        driver = _browser(tmp_path)
        wait = WebDriverWait(driver, 30)
        driver.get(url)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#list tbody tr")) == 6)
        order = [tr.get_attribute("data-id") for tr in driver.find_elements(By.CSS_SELECTOR, "#list tbody tr")]
        body = driver.find_element(By.TAG_NAME, "body")

        def press(key: str, status: str) -> None:
            body.send_keys(key)
            wait.until(lambda d: d.find_element(By.ID, "status").text.startswith(status))

        press("r", "saved: roadwork")   # 1st: roadwork
        press("n", "saved: none")       # 2nd: none
        press("s", "skipped")           # 3rd: skipped, nothing written
        press("r", "saved: roadwork")   # 4th: roadwork ...
        press("u", "undone")            # ... undone (the row leaves labels.csv)
        assert order[3] not in _labels(capture_copy)
        press("n", "saved: none")       # 4th: none
        want = {order[0]: "1", order[1]: "0", order[3]: "0"}
        assert {k: r["label"] for k, r in _labels(capture_copy).items()} == want

        driver.refresh()  # a closed tab loses nothing: the page reads the labels back
        wait.until(lambda d: len(_table_labels(d)) == 6)
        assert _table_labels(driver) == ["roadwork", "none", "", "none", "", ""]
        assert driver.find_element(By.ID, "progress").text.startswith("3 of 6 labelled")
        current = driver.find_element(By.CSS_SELECTOR, "#list tr.current").get_attribute("data-id")
        assert current == order[2]  # back at the first image still unlabelled (the skipped one)
        assert driver.find_element(By.ID, "d-prob").text and not driver.find_element(By.ID, "photo").get_attribute("hidden")
        natural = driver.execute_script("return document.getElementById('photo').naturalWidth")
        widths = {r["sha256"]: r["width"] for r in read_index(capture_copy).to_pylist()}
        assert natural == widths[current]  # the captured bytes themselves were loaded
        if SHOTS:  # show a street frame, not a noise image
            streets = [i for i, k in enumerate(order) if widths[k] == 224]
            street = ([i for i in streets if order[i] not in want] or streets)[0]
            driver.find_elements(By.CSS_SELECTOR, "#list tbody tr")[street].click()
            wait.until(lambda d: d.execute_script("return document.getElementById('photo').naturalWidth") == 224)
            driver.save_screenshot(str(Path(SHOTS) / "review.png"))
    finally:
        if driver is not None:
            driver.quit()
        _stop(server)

    out = tmp_path / "model"
    extra = _small_manifest(tmp_path / "extra")  # capture labels are one group (one day, one source)
    res = subprocess.run([sys.executable, "-m", "roadwork.cli", "train", "--smoke", "--data",
                          str(capture_copy / "labels.csv"), "--data", str(extra), "--out", str(out), "--val-fraction", "0.5"],
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    import json

    split = json.loads((out / "roadwork.json").read_text())["split"]
    used = {**split["train_sources"], **split["val_sources"]}
    assert used["capture-http"] == {"none": 2, "roadwork": 1, "groups": 1}


def _small_manifest(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(2)
    lines = ["path,label,group"]
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
        lines.append(f"{i}.jpg,{i % 2},g{i // 4}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"
