"""The interactive page (pixelrnn serve): its HTTP API against a live server, several clients at
once, cancelling, and the page itself in a real headless Chromium (Selenium). The browser tests
skip where Chromium is not installed, unless PIXELRNN_REQUIRE_BROWSER=1 (.ci/run sets it)."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from helpers import tiny_model, tiny_multiscale

import pixelrnn
from pixelrnn.app.catalog import Catalog
from pixelrnn.app import server as server_module
from pixelrnn.app.server import create_app
from pixelrnn.errors import PixelRNNError
from pixelrnn.receptive_field import receptive_field

pytest.importorskip("uvicorn")
SIZE, SLOW_SIZE = 10, 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Four tiny random models: RGB class-conditional, binary, a slow one (big images) and a
    Multi-Scale one."""
    folder = tmp_path_factory.mktemp("models")
    models = {
        "rgb": (tiny_model("pixelcnn", 3, 4, classes=3).float(), SIZE),
        "binary": (tiny_model("row_lstm", 1, 2).float(), SIZE),
        "slow": (tiny_model("diagonal_bilstm", 3, 256, hidden=16).float(), SLOW_SIZE),
        "multiscale": (tiny_multiscale("row_lstm", 1, 2).float(), SIZE),
    }
    paths = {}
    for name, (model, size) in models.items():
        model.set_class_prior(torch.tensor([0, 1, 2])) if model.classes else None
        paths[name] = folder / f"{name}.safetensors"
        pixelrnn.save_model(paths[name], model, {"dataset": "folder", "image_size_hw": [size, size],
                                                 "class_names": ["cat", "dog", "ship"][: model.classes]})
    return paths


@pytest.fixture(scope="module")
def server(checkpoints):
    """The app on a live uvicorn server in a thread: (base URL, app)."""
    import uvicorn

    app = create_app(Catalog(checkpoints.values(), shipped=False), workers=3)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    instance.should_exit = True
    thread.join(20)


def events(url: str, job: str, on_event=None) -> list[dict]:
    """A job's server-sent events, read to the last one."""
    seen = []
    with httpx.stream("GET", f"{url}/api/jobs/{job}/events", timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
                if on_event is not None:
                    on_event(seen[-1])
    return seen


def run(url: str, **request) -> list[dict]:
    response = httpx.post(f"{url}/api/jobs", json=request, timeout=30)
    assert response.status_code == 200, response.text
    return events(url, response.json()["job"])


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_models_are_described_with_their_size_levels_and_classes(server):
    url, _ = server
    models = {m["name"]: m for m in httpx.get(f"{url}/api/models").json()}
    assert set(models) == {"rgb", "binary", "slow", "multiscale"}
    assert (models["rgb"]["channels"], models["rgb"]["height"], models["rgb"]["levels"]) == (3, SIZE, 4)
    assert models["rgb"]["classes"] == ["cat", "dog", "ship"] and models["binary"]["classes"] == []


@pytest.mark.parametrize("model, request_, message", [
    ("rgb", {"task": "complete", "values": [0] * 5, "label": 0}, "has 300 values"),
    ("rgb", {"task": "complete", "values": [4] * 300, "label": 0}, "values must be in 0..3"),
    ("rgb", {"task": "complete", "values": [0] * 300}, "class-conditional: choose a class"),
    ("rgb", {"task": "sample", "label": 3}, "class 3: must be in 0..2"),
    ("binary", {"task": "sample", "label": 0}, "not class-conditional"),
    ("binary", {"task": "complete", "values": [0] * 100, "known_rows": 11}, "known rows 11"),
    ("binary", {"task": "sample", "count": 17}, "count"),
    ("binary", {"task": "sample", "temperature": 0}, "temperature"),
    ("binary", {"task": "draw"}, "task"),
    ("nope", {"task": "sample"}, "unknown model 'nope'"),
])
def test_bad_requests_get_one_clear_line_and_the_server_keeps_serving(server, model, request_, message):
    url, _ = server
    response = httpx.post(f"{url}/api/jobs", json={"model": model, **request_})
    assert response.status_code == 400 and message in response.json()["error"], response.text
    assert len(run(url, model="binary", task="sample", count=1, seed=0)) == SIZE + 1  # rows, then done


def test_uploads_become_the_models_values_and_bad_ones_are_refused(server):
    url, _ = server
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    values = httpx.post(f"{url}/api/models/rgb/decode", content=png(rgb)).json()["values"]
    from pixelrnn.data.images import decode_image

    expected = decode_image(png(rgb), "x", 3, SIZE, resize=True).astype(np.int64) * 4 // 256  # central crop
    assert values == expected.flatten().tolist()
    for blob, message in [(b"not an image", "not a readable image"), (b"", "empty"),
                          (huge_png(), "at most 40 million")]:
        response = httpx.post(f"{url}/api/models/rgb/decode", content=blob)
        assert response.status_code == 400 and message in response.json()["error"]


def huge_png() -> bytes:
    """A small file of a 10,000 x 5,000 image (a decompression bomb to the decoder)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_completions_stream_row_by_row_keep_the_known_rows_and_follow_the_model(server, checkpoints):
    url, _ = server
    image = torch.randint(0, 4, (3, SIZE, SIZE))
    seen = run(url, model="rgb", task="complete", values=image.flatten().tolist(), known_rows=4, count=3,
               seed=11, label=2)
    progress, done = seen[:-1], seen[-1]
    assert [e["row"] for e in progress] == list(range(1, SIZE + 1)) and done["type"] == "done"
    result = torch.tensor(done["values"]).view(3, 3, SIZE, SIZE)
    assert torch.equal(result[:, :, :4], image[:, :4].expand(3, -1, -1, -1))
    model = pixelrnn.load_model(checkpoints["rgb"])
    assert torch.equal(result, model.complete(image.expand(3, -1, -1, -1), 4, seed=11, labels=2))


def test_several_clients_at_once_each_get_their_own_result(server, checkpoints):
    url, _ = server
    model = pixelrnn.load_model(checkpoints["rgb"])
    torch.manual_seed(4)
    requests = [dict(model="rgb", task="complete", values=torch.randint(0, 4, (3 * SIZE * SIZE,)).tolist(),
                     known_rows=k, count=2, seed=100 + k, label=k % 3, temperature=0.5 + 0.25 * k)
                for k in range(6)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda r: run(url, **r)[-1], requests))
    for request, answer in zip(requests, answers):
        image = torch.tensor(request["values"]).view(1, 3, SIZE, SIZE).expand(2, -1, -1, -1)
        expected = model.complete(image, request["known_rows"], seed=request["seed"], labels=request["label"],
                                  temperature=request["temperature"])
        assert torch.equal(torch.tensor(answer["values"]).view(2, 3, SIZE, SIZE), expected)


def test_a_long_job_is_cancelled_between_rows(server):
    url, app = server
    job = httpx.post(f"{url}/api/jobs", json={"model": "slow", "task": "sample", "count": 16}).json()["job"]
    seen = events(url, job, lambda e: e["type"] == "progress" and e["row"] == 1 and
                  httpx.delete(f"{url}/api/jobs/{job}").raise_for_status())
    assert seen[-1]["type"] == "cancelled" and len(seen) < SLOW_SIZE
    wait_until(lambda: app.state.runner.running == 0)
    assert app.state.runner.jobs[job].outcome == "cancelled"


def test_a_client_that_goes_away_cancels_its_job(server):
    url, app = server
    job = httpx.post(f"{url}/api/jobs", json={"model": "slow", "task": "sample", "count": 16}).json()["job"]
    with httpx.stream("GET", f"{url}/api/jobs/{job}/events", timeout=60) as response:
        next(line for line in response.iter_lines() if line.startswith("data: "))
    wait_until(lambda: app.state.runner.jobs[job].outcome is not None and app.state.runner.running == 0)
    assert app.state.runner.jobs[job].outcome == "cancelled"


def wait_until(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_surprise_map_is_each_pixels_exact_minus_log_p(server, checkpoints):
    url, _ = server
    model = pixelrnn.load_model(checkpoints["rgb"])
    image = torch.randint(0, 4, (1, 3, SIZE, SIZE))
    for label in (None, 1):  # the marginal over classes, and given a class
        answer = httpx.post(f"{url}/api/likelihood", json={"model": "rgb", "values": image.flatten().tolist(),
                                                           "label": label}).json()
        expected = -model.log_prob(image, labels=label).item()
        assert answer["nll_nats"] == pytest.approx(expected, abs=1e-3)
        assert sum(map(sum, answer["per_pixel_nats"])) == pytest.approx(expected, abs=1e-3)
        assert answer["bits_per_dim"] == pytest.approx(expected / (300 * np.log(2)), rel=1e-6)
        assert answer["heatmap"].startswith("data:image/png;base64,")


def test_the_receptive_field_of_a_pixel_is_its_gradient_at_the_image(server, checkpoints):
    """Each earlier pixel's gradient at the drawn image, channels summed, given the class: zero
    from the pixel on; bad pixels get one line."""
    url, _ = server
    model = pixelrnn.load_model(checkpoints["rgb"])
    image = torch.randint(0, 4, (1, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(4))
    request = {"model": "rgb", "values": image.flatten().tolist(), "label": 2, "row": 6, "column": 4}
    answer = httpx.post(f"{url}/api/receptive-field", json=request).json()
    field = receptive_field(model, SIZE, SIZE, (6, 4), at=image, label=2).sum(0)
    assert answer["earlier"] == 6 * SIZE + 4 and answer["seen"] == int((field > 0).sum()) > 0
    assert not field.flatten()[6 * SIZE + 4 :].any()
    assert answer["picture"].startswith("data:image/png;base64,")
    for bad, message in [({"row": SIZE}, f"pixel ({SIZE}, 4) is outside"), ({"row": -1}, "row: Input should be"),
                         ({"label": 7}, "class")]:
        response = httpx.post(f"{url}/api/receptive-field", json={**request, **bad})
        assert response.status_code == 400 and message in response.json()["error"], response.text


def test_a_pixels_predictions_are_the_models_conditionals_at_every_level(server, checkpoints):
    """Each channel's p(x_t = v | x_<t) for every level: given a class, or the marginal over classes;
    at the image's values they are the surprise map's conditionals."""
    url, _ = server
    model = pixelrnn.load_model(checkpoints["rgb"])
    image = torch.randint(0, 4, (1, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(5))
    for label in (None, 1):
        request = {"model": "rgb", "values": image.flatten().tolist(), "label": label, "row": 3, "column": 8}
        answer = httpx.post(f"{url}/api/predictions", json=request).json()
        assert answer["levels"] == 4 and len(answer["channels"]) == 3
        labels = None if label is None else torch.tensor([label])
        with torch.no_grad():
            expected = model.predictive_log_probs(image, labels)[0, :, :, 3, 8].double().exp()
            per_value = model.log_prob_per_value(image, labels)[0, :, 3, 8].double().exp()
        for c, channel in enumerate(answer["channels"]):
            assert channel["value"] == image[0, c, 3, 8]
            assert channel["probs"] == pytest.approx(expected[c].tolist(), abs=1e-6)
            assert sum(channel["probs"]) == pytest.approx(1, abs=1e-5)
            assert channel["probs"][channel["value"]] == pytest.approx(per_value[c].item(), abs=1e-5)
    response = httpx.post(f"{url}/api/predictions", json={**request, "column": SIZE})
    assert response.status_code == 400 and f"pixel (3, {SIZE}) is outside" in response.json()["error"]


def test_a_multiscale_models_field_follows_its_order(server):
    """Its pixel's field is the library's, counted in the Multi-Scale order (small image first)."""
    url, app = server
    request = {"model": "multiscale", "values": [1] * SIZE * SIZE, "row": 5, "column": 3}
    answer = httpx.post(f"{url}/api/receptive-field", json=request).json()
    model, _ = app.state.catalog.open("multiscale")
    x = torch.ones(1, 1, SIZE, SIZE)
    field = receptive_field(model, SIZE, SIZE, (5, 3), at=x)
    assert answer["seen"] == int((field > 0).sum()) > 0
    # the 5 x 5 small image, then the others in raster order: 5 in each even row, 10 in each odd
    # one of rows 0-4, and 3 in row 5
    assert answer["earlier"] == 25 + 3 * 5 + 2 * 10 + 3
    predicted = httpx.post(f"{url}/api/predictions", json=request).json()
    assert sum(predicted["channels"][0]["probs"]) == pytest.approx(1, abs=1e-6)


# --- in a real browser ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        if os.environ.get("PIXELRNN_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium and ChromeDriver are required here (apt install chromium chromium-driver)")
        pytest.skip("no Chromium / ChromeDriver (apt install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def page_state(driver, key):
    return driver.execute_script(f"return window.pixelrnn.{key};")


def choose(driver, model: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "model")).select_by_value(model)
    wait_until(lambda: page_state(driver, "info.name") == model, 10)


def test_the_page_draws_uploads_completes_and_reports_bad_uploads(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    url, _ = server
    browser.get(url)
    wait_until(lambda: browser.execute_script("return document.body.dataset.ready") == "true", 20)
    choose(browser, "rgb")
    assert browser.find_element("id", "label-row").is_displayed()
    canvas = browser.find_element("id", "canvas")
    browser.execute_script("document.getElementById('pen').value = '#ff8000';")
    ActionChains(browser).move_to_element_with_offset(canvas, -60, -100).click_and_hold() \
        .move_by_offset(120, 30).release().perform()  # a stroke across the top rows
    drawn = page_state(browser, "values")
    assert any(drawn) and len(drawn) == 3 * SIZE * SIZE
    browser.execute_script("const s = document.getElementById('known-rows'); s.value = 5;"
                           "s.dispatchEvent(new Event('input'));")
    browser.find_element("id", "label").send_keys("dog")
    browser.find_element("id", "seed").send_keys("3")
    browser.find_element("id", "complete").click()
    wait_until(lambda: browser.find_element("id", "status").text == "done", 30)
    result = torch.tensor(page_state(browser, "lastResult.values")).view(4, 3, SIZE, SIZE)
    assert torch.equal(result[:, :, :5], torch.tensor(drawn).view(3, SIZE, SIZE)[:, :5].expand(4, -1, -1, -1))
    assert browser.execute_script("return document.getElementById('result').naturalWidth") > 0
    # Upload: a PNG becomes the canvas; a bad file gets a message and the page keeps working.
    picture = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    (tmp_path / "good.png").write_bytes(png(picture))
    (tmp_path / "bad.png").write_bytes(b"this is text")
    (tmp_path / "huge.png").write_bytes(huge_png())
    upload = browser.find_element("id", "upload")
    upload.send_keys(str(tmp_path / "good.png"))
    wait_until(lambda: page_state(browser, "values") == (picture.transpose(2, 0, 1).astype(int) * 4 // 256)
               .flatten().tolist(), 10)
    for name, message in [("bad.png", "not a readable image"), ("huge.png", "at most 40 million")]:
        upload.send_keys(str(tmp_path / name))
        wait_until(lambda: message in browser.find_element("id", "message").text, 10)
    browser.find_element("id", "surprise").click()
    wait_until(lambda: "nats" in browser.find_element("id", "nll").text, 10)
    heatmap = browser.find_element("id", "heatmap")  # click the middle of pixel (3, 7): offsets from its centre
    cell = heatmap.size["width"] / SIZE
    ActionChains(browser).move_to_element_with_offset(heatmap, round((7.5 - SIZE / 2) * cell),
                                                      round((3.5 - SIZE / 2) * cell)).click().perform()
    wait_until(lambda: page_state(browser, "field") is not None, 10)
    assert (page_state(browser, "field.row"), page_state(browser, "field.column")) == (3, 7)
    assert "pixel (3, 7)" in browser.find_element("id", "field-info").text
    wait_until(lambda: page_state(browser, "predictions") is not None, 10)
    assert page_state(browser, "predictions.row") == 3 and browser.find_element("id", "predictions").is_displayed()
    assert "black: the image's value (R " in browser.find_element("id", "predictions-info").text
    assert browser.execute_script("return document.getElementById('field').naturalWidth") > 0
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_the_page_samples_live_and_cancels(server, browser):
    url, app = server
    browser.get(url)
    wait_until(lambda: browser.execute_script("return document.body.dataset.ready") == "true", 20)
    choose(browser, "slow")
    assert not browser.find_element("id", "label-row").is_displayed()  # no classes: no class picker
    count = browser.find_element("id", "count")
    count.clear()
    count.send_keys("16")
    browser.find_element("id", "sample").click()
    wait_until(lambda: browser.find_element("id", "status").text.startswith("row "), 30)
    browser.find_element("id", "cancel").click()
    assert browser.find_element("id", "status").text == "cancelled"
    wait_until(lambda: app.state.runner.running == 0)
    newest = list(app.state.runner.jobs.values())[-1]
    assert newest.outcome == "cancelled"  # the server stopped it, not just the page
    assert page_state(browser, "lastResult") is None


def test_the_page_shows_what_it_can_of_one_pixel(server, browser, monkeypatch):
    """A Multi-Scale model's pixel: its field and its predictions; when the field fails, the
    predictions are drawn all the same and the field's error is one line."""
    url, _ = server
    browser.get(url)
    wait_until(lambda: browser.execute_script("return document.body.dataset.ready") == "true", 20)
    choose(browser, "multiscale")
    browser.find_element("id", "surprise").click()
    wait_until(lambda: "nats" in browser.find_element("id", "nll").text, 10)
    browser.find_element("id", "heatmap").click()
    wait_until(lambda: page_state(browser, "predictions") is not None and page_state(browser, "field") is not None, 10)
    assert browser.find_element("id", "field").is_displayed() and browser.find_element("id", "predictions").is_displayed()

    def fails(*args, **kwargs):
        raise PixelRNNError("no field today")

    monkeypatch.setattr(server_module, "receptive_field", fails)
    browser.execute_script("window.pixelrnn.field = null; window.pixelrnn.predictions = null;")
    browser.find_element("id", "heatmap").click()
    wait_until(lambda: page_state(browser, "predictions") is not None, 10)
    assert page_state(browser, "field") is None
    wait_until(lambda: "no field today" in browser.find_element("id", "message").text, 10)


def test_the_page_fetches_nothing_from_the_internet():
    from importlib import resources

    for file in (resources.files("pixelrnn.app") / "static").iterdir():
        text = file.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, file.name


def test_serve_starts_on_the_given_port_and_refuses_bad_options(checkpoints, capsys):
    import subprocess
    import sys

    from pixelrnn.cli.main import main

    assert main(["serve", "--no-shipped", "--checkpoint", str(checkpoints["rgb"]), "--data", "cifar10"]) == 2
    assert "expected DATASET=DIR" in capsys.readouterr().err
    assert main(["serve", "--no-shipped", "--checkpoint", "no/such/run"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "pixelrnn.cli.main", "serve", "--no-shipped", "--port",
                                str(port), "--checkpoint", str(checkpoints["binary"]), "--host", "0.0.0.0"],
                               stderr=subprocess.PIPE, text=True)
    try:
        def answers():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/models").json()[0]["name"] == "binary"
            except httpx.HTTPError:
                return False

        wait_until(answers, 60)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "warning: serving on 0.0.0.0" in err
