"""Helpers for the admin-listener tests: plain HTTP requests to it (urllib would hide the raw
status lines and the bytes we want to send badly on purpose), and headless Chromium driven over
its DevTools protocol with python3-websockets, so a test reads the live page's DOM and saves a
screenshot.
"""

import json
import os
import shutil
import socket
import tempfile
import urllib.request

import websockets

import harness as h


def get(port, path, token=None, headers=(), timeout=10):
    """GET http://127.0.0.1:port/path; returns (status, headers dict lower-cased, body str)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines += list(headers)
    raw = raw_request(port, ("\r\n".join(lines) + "\r\n\r\n").encode(), timeout)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    fields = {}
    for line in header_lines:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    assert int(fields["content-length"]) == len(body), (fields, len(body))
    return int(status_line.split()[1]), fields, body.decode()


def raw_request(port, data, timeout=10):
    """Sends `data` and reads until the server closes; returns every byte it answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


class Browser:
    """Headless Chromium (Debian's `chromium`) showing one page; `evaluate` runs JavaScript in
    it and returns the value, `screenshot` writes a PNG."""

    def __init__(self, url):
        self.profile = tempfile.mkdtemp(prefix="chromium-", dir=h.RUNTIME_DIR)
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        self.proc = h.start_process(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--mute-audio",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             "--window-size=1280,900", f"--user-data-dir={self.profile}", url],
            log_path=os.path.join(h.RUNTIME_DIR, "chromium.log"))
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        h.wait_until(lambda: os.path.exists(port_file) and open(port_file).read().strip(), 60,
                     interval=0.2, what="chromium's DevTools port")
        self.devtools_port = int(open(port_file).read().split()[0])

        def page_target():
            with urllib.request.urlopen(f"http://127.0.0.1:{self.devtools_port}/json/list",
                                        timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            return pages[0]["webSocketDebuggerUrl"] if pages else None
        self.ws_url = h.wait_until(page_target, 30, interval=0.2, what="chromium's page")
        self._id = 0

    async def _call(self, method, params):
        async with websockets.connect(self.ws_url, max_size=None) as ws:
            self._id += 1
            await ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise AssertionError(f"{method}: {reply['error']}")
                    return reply["result"]

    def evaluate(self, expression):
        result = h.run_async(self._call("Runtime.evaluate", {
            "expression": expression, "returnByValue": True}), timeout=30)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path):
        import base64
        result = h.run_async(self._call("Page.captureScreenshot", {"format": "png"}), timeout=30)
        with open(path, "wb") as f:
            f.write(base64.b64decode(result["data"]))
        return path

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
