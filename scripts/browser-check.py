#!/usr/bin/python3
"""Loads lmk-tracker's status page in headless Chromium (Debian's chromium,
chromium-driver and python3-selenium) and prints one JSON object of what it
found: the file names listed, whether any <img> or alert came from a name,
whether the page's script refreshed the peer count from /stats.json after a
peer announced, any console error (a Content-Security-Policy violation),
the names after following the filter, and the screenshot's path.

usage: browser-check.py URL OUTDIR FILTER
"""
import json
import os
import sys
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, outdir, text = sys.argv[1], sys.argv[2], sys.argv[3]
opts = Options()
opts.binary_location = "/usr/bin/chromium"
for arg in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--window-size=1280,1024",
            "--user-data-dir=" + os.path.join(outdir, "chromium-profile")]:
    opts.add_argument(arg)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
try:
    driver.set_page_load_timeout(30)
    driver.get(url + "/")

    def alert_open():
        try:
            driver.switch_to.alert.dismiss()
            return True
        except NoAlertPresentException:
            return False

    alerted = alert_open()
    names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#files td.name")]
    images = len(driver.find_elements(By.TAG_NAME, "img"))
    shot = os.path.join(outdir, "status-page.png")
    driver.save_screenshot(shot)
    # A peer announces over HTTP; the page's script shows it within its 5 s refresh.
    peers = driver.find_element(By.CSS_SELECTOR, '[data-k="peers"]')
    before = peers.text
    urllib.request.urlopen(url + "/announce?info_hash=bbbbbbbbbbbbbbbbbbbb&peer_id=-SEL000-abcdefghijkl&port=7777&left=5",
                           timeout=10).read()
    try:
        WebDriverWait(driver, 15).until(lambda d: d.find_element(By.CSS_SELECTOR, '[data-k="peers"]').text == "1")
        refreshed = before == "0"
    except Exception:
        refreshed = False
    errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    box = driver.find_element(By.NAME, "q")
    box.send_keys(text)
    box.submit()
    WebDriverWait(driver, 20).until(lambda d: "q=" in d.current_url)
    filtered = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#files td.name")]
    alerted = alerted or alert_open()
    print(json.dumps({"names": names, "images": images, "alerted": alerted, "refreshed": refreshed,
                      "console_errors": errors, "filtered": filtered,
                      "filtered_url": driver.current_url, "screenshot": shot}))
finally:
    driver.quit()
