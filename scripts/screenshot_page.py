"""Write docs/images/page.png: the page with the shipped class-conditional PixelCNN, an example
digit completed as class 3, its surprise map and the receptive field of one pixel (headless
Chromium; run in .venv)."""

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


def main(out: Path = ROOT / "docs" / "images" / "page.png") -> None:
    server = uvicorn.Server(uvicorn.Config(create_app(Catalog()), host="127.0.0.1", port=8931, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    wait(lambda: server.started)
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1200"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get("http://127.0.0.1:8931/")
        wait(lambda: driver.execute_script("return document.body.dataset.ready") == "true")
        Select(driver.find_element("id", "model")).select_by_value("mnist-binarized-conditional-pixelcnn")
        wait(lambda: len(driver.find_elements("css selector", "#examples img")) > 0)
        driver.find_elements("css selector", "#examples img")[1].click()
        Select(driver.find_element("id", "label")).select_by_visible_text("3")
        driver.find_element("id", "seed").send_keys("0")
        count = driver.find_element("id", "count")
        count.clear()
        count.send_keys("8")
        driver.find_element("id", "complete").click()
        wait(lambda: driver.find_element("id", "status").text == "done")
        driver.find_element("id", "surprise").click()
        wait(lambda: "nats" in driver.find_element("id", "nll").text)
        heatmap = driver.find_element("id", "heatmap")  # pixel (16, 14): offsets from the picture's centre
        cell = heatmap.size["width"] / 28
        ActionChains(driver).move_to_element_with_offset(heatmap, round(0.5 * cell), round(2.5 * cell)).click().perform()
        wait(lambda: driver.execute_script("return window.pixelrnn.field") is not None)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        server.should_exit = True
    print(out)


if __name__ == "__main__":
    main()
