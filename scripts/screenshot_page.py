"""Write docs/images/page.png: the page with the shipped class-conditional PixelCNN, an example
digit completed as class 3, its surprise map and one pixel's receptive field and predictions; and,
given the CIFAR-10 folder, docs/images/page_cifar10.png: the same for the shipped CIFAR-10 PixelCNN
and a validation image (headless Chromium; run in .venv).

    python scripts/screenshot_page.py [CIFAR10_DIR]
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.support.ui import Select

from pixelrnn.app.catalog import Catalog
from pixelrnn.app.server import create_app

ROOT = Path(__file__).resolve().parents[1]


def wait(condition, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            sys.exit("timed out")
        time.sleep(0.1)


def main(cifar10: str | None = None) -> None:
    data = {"cifar10": cifar10} if cifar10 else {}
    server = uvicorn.Server(uvicorn.Config(create_app(Catalog(data=data)), host="127.0.0.1", port=8931,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    wait(lambda: server.started)
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1350"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        shoot(driver, "mnist-binarized-conditional-pixelcnn", example=1, label="3", pixel=(16, 14),
              out=ROOT / "docs" / "images" / "page.png")
        if cifar10:
            shoot(driver, "cifar10-pixelcnn-h32-k5", example=3, label=None, pixel=(20, 12),
                  out=ROOT / "docs" / "images" / "page_cifar10.png")
    finally:
        driver.quit()
        server.should_exit = True


def shoot(driver, model: str, example: int, label: str | None, pixel: tuple[int, int], out: Path) -> None:
    """Complete example image ``example`` of ``model`` (given class ``label``), then its surprise
    map and the receptive field and predictions of ``pixel``; a screenshot into ``out``."""
    driver.get("http://127.0.0.1:8931/")
    wait(lambda: driver.execute_script("return document.body.dataset.ready") == "true")
    Select(driver.find_element("id", "model")).select_by_value(model)
    wait(lambda: driver.execute_script(  # this model's examples (drawn at its size), not the last one's
        f"const e = document.querySelectorAll('#examples img'); return window.pixelrnn.info.name === '{model}' && "
        f"e.length > {example} && e[{example}].naturalWidth === window.pixelrnn.info.width"))
    driver.find_elements("css selector", "#examples img")[example].click()
    if label is not None:
        Select(driver.find_element("id", "label")).select_by_visible_text(label)
    driver.find_element("id", "seed").send_keys("0")
    count = driver.find_element("id", "count")
    count.clear()
    count.send_keys("8")
    driver.find_element("id", "complete").click()
    wait(lambda: driver.find_element("id", "status").text == "done", 300)
    driver.find_element("id", "surprise").click()
    wait(lambda: "nats" in driver.find_element("id", "nll").text)
    heatmap = driver.find_element("id", "heatmap")  # the pixel's centre, as an offset from the picture's
    size = driver.execute_script("return window.pixelrnn.info.height")
    cell = heatmap.size["width"] / size
    ActionChains(driver).move_to_element_with_offset(heatmap, round((pixel[1] + 0.5 - size / 2) * cell),
                                                     round((pixel[0] + 0.5 - size / 2) * cell)).click().perform()
    wait(lambda: driver.execute_script("return window.pixelrnn.field && window.pixelrnn.predictions") is not None)
    driver.save_screenshot(str(out))
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:2])
