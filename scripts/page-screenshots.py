#!/usr/bin/env python3
"""Screenshots of the buyer's pages at 1280 and 360 px, for the README.

Drives headless Chromium through chromedriver's WebDriver HTTP API (the
standard library only) against a running edge with seeded data:

    cargo test -p e2e --test edge_pages serve_pages_for_a_look -- --ignored &
    python3 scripts/page-screenshots.py [/tmp/pages-look.json] [docs/screenshots]

It signs in, walks city -> show -> hold -> checkout -> confirmation ->
my bookings -> cancellation and the waiting room, and saves each page as
NAME-1280.png and NAME-360.png (whole pages, at most 3000 px high).
"""
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

LOOK = sys.argv[1] if len(sys.argv) > 1 else "/tmp/pages-look.json"
OUT = sys.argv[2] if len(sys.argv) > 2 else "docs/screenshots"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Driver:
    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["chromedriver", f"--port={self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50):
            try:
                self.call("GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--hide-scrollbars", "--force-device-scale-factor=1"]}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")["value"]

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def go(self, url):
        self.s("POST", "/url", {"url": url})

    def find(self, css):
        el = self.s("POST", "/element", {"using": "css selector", "value": css})
        return list(el.values())[0]

    def click(self, css):
        self.s("POST", f"/element/{self.find(css)}/click", {})

    def type(self, css, text):
        self.s("POST", f"/element/{self.find(css)}/value", {"text": text})

    def js(self, script):
        return self.s("POST", "/execute/sync", {"script": script, "args": []})

    def cdp(self, cmd, params):
        return self.s("POST", "/goog/cdp/execute", {"cmd": cmd, "params": params})

    def shot(self, name):
        # Device metrics rather than window sizes: a window cannot be made
        # 360 px wide, and the whole page's height is wanted.
        for width in (1280, 360):
            metrics = {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600}
            self.cdp("Emulation.setDeviceMetricsOverride", metrics)
            time.sleep(0.3)
            metrics["height"] = min(max(self.js("return document.documentElement.scrollHeight"), 400), 3000)
            self.cdp("Emulation.setDeviceMetricsOverride", metrics)
            time.sleep(0.3)
            png = self.cdp("Page.captureScreenshot", {"format": "png"})["data"]
            path = os.path.join(OUT, f"{name}-{width}.png")
            with open(path, "wb") as f:
                f.write(base64.b64decode(png))
            print(path)
        self.cdp("Emulation.clearDeviceMetricsOverride", {})

    def quit(self):
        try:
            self.s("DELETE", "")
        finally:
            self.proc.terminate()


def main():
    look = json.load(open(LOOK))
    base, city, show, flash = look["url"], look["city"], look["show"], look["flash"]
    os.makedirs(OUT, exist_ok=True)
    d = Driver()
    try:
        d.go(f"{base}/")
        d.shot("home")
        d.go(f"{base}/signin")
        d.shot("signin")
        d.type("#email", "ann@example.com")
        d.click("form[action='/signin'] button")
        time.sleep(0.5)
        d.go(f"{base}/c/{city}?date={look['date']}")
        d.shot("city")
        d.go(f"{base}/c/{city}/shows/{show}")
        time.sleep(1.5)
        d.click("label[for='seat-B6']")
        d.click("label[for='seat-B7']")
        d.shot("show")
        d.click("#hold-button")
        time.sleep(1.5)
        d.shot("show-held")
        d.click("#hold-continue")
        time.sleep(1)
        d.shot("checkout")
        d.click("form.pay button")
        time.sleep(2)
        d.shot("confirmation")
        d.go(f"{base}/bookings")
        d.shot("bookings")
        d.click("a[href$='/cancel']")
        time.sleep(0.5)
        d.shot("cancel")
        d.go(f"{base}/c/{city}/sales/{flash}")
        time.sleep(0.5)
        d.click("form[action$='/join'] button")
        time.sleep(1)
        d.shot("sale")
    finally:
        d.quit()


if __name__ == "__main__":
    main()
