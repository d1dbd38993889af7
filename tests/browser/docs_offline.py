#!/usr/bin/env python3
"""Checks that Swagger UI at <base>/docs/ renders with no request leaving the machine.

    python3 tests/browser/docs_offline.py http://127.0.0.1:8030

Starts nothing itself: the server must already be running at <base>. Two independent checks, both must pass:

1. Static: fetch /docs/ and every asset it loads (scripts, stylesheets, icons) and require every asset URL to be on the
   base origin. Stylesheets are checked for url(...) and @import, and the Swagger UI initializer (the configuration
   script) for any http(s):// URL at all, and for the online validator being switched off. The vendored bundles
   themselves contain many URL strings (XML namespaces, licence and spec links) that are never fetched; the browser
   check below is what proves none of them is.
2. Browser: run Debian's headless Chromium against /docs/ with every host name except the base host made
   unresolvable, record the network log, dump the DOM after 5 s of virtual time, and require that Swagger UI rendered
   (the API title from /openapi.json and one operation block per documented operation appear) and that every request
   the page made went to the base origin. Requests Chromium makes for itself (component updates, account checks) are
   listed but not counted: they are not the page's, and the host resolver rules keep them on the machine anyway.

Installs Debian's `chromium` with apt-get when it is missing and the script runs as root. Exits 0 when both checks pass,
1 on any failure, 2 on bad usage.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from html.parser import HTMLParser

HTTP_TIMEOUT_SECONDS = 10
CHROMIUM_TIMEOUT_SECONDS = 90
APT_TIMEOUT_SECONDS = 900
VIRTUAL_TIME_BUDGET_MS = 5000


def log(message: str) -> None:
    print(f"[docs_offline] {message}", file=sys.stderr, flush=True)


def fetch(url: str) -> tuple[int, str, bytes]:
    """GET url: (status, content type, body)."""
    request = urllib.request.Request(url, headers={"accept": "*/*"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("content-type", ""), error.read()


def origin_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class AssetCollector(HTMLParser):
    """Collects every URL-valued attribute that makes the browser fetch something."""

    URL_ATTRIBUTES = {"src", "href", "srcset", "data", "poster", "action", "formaction"}

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in self.URL_ATTRIBUTES and value:
                if name == "srcset":
                    self.urls.extend(part.strip().split(" ")[0] for part in value.split(",") if part.strip())
                else:
                    self.urls.append(value.strip())


def static_check(base: str) -> list[str]:
    """Fetches /docs/ and its assets; returns the problems found."""
    problems: list[str] = []
    base_origin = origin_of(base)
    page_url = f"{base}/docs/"
    status, content_type, body = fetch(page_url)
    if status != 200 or "text/html" not in content_type:
        return [f"GET {page_url}: {status} {content_type}"]
    html = body.decode("utf-8", "replace")
    collector = AssetCollector()
    collector.feed(html)
    if not collector.urls:
        problems.append("the /docs/ page references no assets at all")
    # Inline <script> and <style> content is checked like the initializer.
    inline = re.findall(r"<(?:script|style)[^>]*>(.*?)</(?:script|style)>", html, flags=re.S | re.I)
    problems += [f"/docs/ inline code: {problem}" for chunk in inline for problem in external_urls_in_code(chunk, base_origin)]

    for reference in collector.urls:
        if reference.startswith(("data:", "#")):
            continue
        url = urllib.parse.urljoin(page_url, reference)
        if origin_of(url) != base_origin:
            problems.append(f"/docs/ loads {reference} from another origin")
            continue
        status, content_type, asset = fetch(url)
        log(f"asset {url}: {status} {content_type}")
        if status != 200:
            problems.append(f"asset {url} answered {status}")
            continue
        text = asset.decode("utf-8", "replace")
        if url.endswith(".css") or "text/css" in content_type:
            problems += [f"{url}: {problem}" for problem in external_urls_in_css(text, url, base_origin)]
        elif url.endswith("swagger-initializer.js"):
            problems += [f"{url}: {problem}" for problem in external_urls_in_code(text, base_origin)]
            problems += [f"{url}: {problem}" for problem in initializer_problems(text)]
        elif url.endswith(".js"):
            hosts = sorted({origin_of(match) for match in re.findall(r"https?://[A-Za-z0-9.\-]+", text)} - {base_origin})
            log(f"{url} embeds URL strings of {len(hosts)} other origins (not fetched; see the browser check)")
    return problems


def external_urls_in_css(css: str, css_url: str, base_origin: str) -> list[str]:
    problems = []
    references = re.findall(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)", css) + re.findall(r"@import\s+['\"]([^'\"]+)['\"]", css)
    for reference in references:
        if reference.startswith("data:"):
            continue
        if origin_of(urllib.parse.urljoin(css_url, reference)) != base_origin:
            problems.append(f"stylesheet loads {reference} from another origin")
    return problems


def external_urls_in_code(code: str, base_origin: str) -> list[str]:
    return [
        f"references {url}"
        for url in re.findall(r"(?:https?:)?//[A-Za-z0-9.\-]+(?::\d+)?[^\s'\"`)]*", code)
        if url.startswith(("http:", "https:", "//")) and origin_of(urllib.parse.urljoin(base_origin, url)) != base_origin
    ]


def initializer_problems(code: str) -> list[str]:
    problems = []
    validator = re.search(r"[\"']?validatorUrl[\"']?\s*:\s*([^,\n]+)", code)
    if not validator or validator.group(1).strip().strip("\"'") not in ("none", "null"):
        problems.append("the online spec validator (validator.swagger.io) is not switched off with validatorUrl")
    if "/openapi.json" not in code:
        problems.append("Swagger UI is not pointed at this gateway's /openapi.json")
    return problems


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium() -> str:
    path = find_chromium()
    if path:
        return path
    if os.geteuid() != 0:
        raise SystemExit("chromium is not installed and this is not root: install it with `apt-get install -y chromium`")
    log("chromium is missing: installing Debian's chromium with apt-get")
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, timeout=APT_TIMEOUT_SECONDS, env=environment)
    subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, timeout=APT_TIMEOUT_SECONDS, env=environment)
    path = find_chromium()
    if not path:
        raise SystemExit("chromium is still missing after apt-get install")
    return path


def load_net_log(path: str) -> dict:
    with open(path, encoding="utf-8", errors="replace") as file:
        text = file.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # A log cut short (the browser was stopped) lacks its closing brackets.
        return json.loads(text.rstrip().rstrip(",") + "]}")


def page_requests(net_log: dict) -> tuple[list[str], list[str]]:
    """(requests the page made, requests the browser made for itself) from a Chromium net log."""
    event_types = {number: name for name, number in net_log["constants"]["logEventTypes"].items()}
    page: list[str] = []
    browser: list[str] = []
    for event in net_log.get("events", []):
        if event_types.get(event.get("type")) != "URL_REQUEST_START_JOB":
            continue
        params = event.get("params", {})
        url = params.get("url", "")
        if not url:
            continue
        initiated_by_page = params.get("request_type") == "main frame" or params.get("initiator", "not an origin") != "not an origin"
        (page if initiated_by_page else browser).append(url)
    return page, browser


def browser_check(base: str) -> list[str]:
    """Renders /docs/ in headless Chromium with only the base host resolvable; returns the problems found."""
    problems: list[str] = []
    base_origin = origin_of(base)
    base_host = urllib.parse.urlsplit(base).hostname or "127.0.0.1"
    status, _, document = fetch(f"{base}/openapi.json")
    if status != 200:
        return [f"GET {base}/openapi.json answered {status}"]
    openapi = json.loads(document)
    title = openapi["info"]["title"]
    operation_count = sum(
        1 for item in openapi["paths"].values() for method in item if method in ("get", "put", "post", "delete", "patch")
    )

    chromium = ensure_chromium()
    with tempfile.TemporaryDirectory(prefix="docs-offline-") as scratch:
        net_log_path = os.path.join(scratch, "net-log.json")
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-features=AutofillServerCommunication,OptimizationHints,MediaRouter",
            "--no-first-run",
            "--no-default-browser-check",
            "--no-pings",
            f"--user-data-dir={os.path.join(scratch, 'profile')}",
            # Nothing but the base host resolves, so a page that needs a CDN would fail to render.
            f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {base_host}",
            f"--log-net-log={net_log_path}",
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
            "--dump-dom",
            f"{base}/docs/",
        ]
        log("running " + " ".join(command[:1] + ["..."] + command[-3:]))
        try:
            result = subprocess.run(command, capture_output=True, timeout=CHROMIUM_TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            return [f"chromium did not finish within {CHROMIUM_TIMEOUT_SECONDS} s"]
        dom = result.stdout.decode("utf-8", "replace")
        if result.returncode != 0:
            problems.append(f"chromium exited with {result.returncode}: {result.stderr.decode('utf-8', 'replace')[-2000:]}")
        rendered_operations = len(set(re.findall(r'id="operations-(?!tag-)[^"]+"', dom)))
        log(f"DOM: {len(dom)} bytes, {rendered_operations} operation blocks, title present: {title in dom}")
        if 'class="swagger-ui' not in dom:
            problems.append("the DOM has no Swagger UI root: Swagger UI did not start")
        if title not in dom:
            problems.append(f"the API title {title!r} is not in the rendered DOM: the document did not load")
        if rendered_operations < operation_count:
            problems.append(f"{rendered_operations} operation blocks rendered, {operation_count} operations documented")
        if "opblock" not in dom:
            problems.append("no opblock elements: operations were not rendered")

        if not os.path.exists(net_log_path):
            problems.append("chromium wrote no network log")
            return problems
        page, browser = page_requests(load_net_log(net_log_path))
        browser_hosts = sorted({urllib.parse.urlsplit(url).netloc for url in browser if url})
        log(f"the page made {len(page)} requests; chromium made {len(browser)} of its own (not counted): {browser_hosts}")
        external = sorted({url for url in page if origin_of(url) != base_origin})
        problems += [f"the page requested {url}, which is not on {base_origin}" for url in external]
        if not any(url.endswith("/openapi.json") for url in page):
            problems.append("the page never requested /openapi.json")
    return problems


def main(arguments: list[str]) -> int:
    if len(arguments) != 1 or not arguments[0].startswith(("http://", "https://")):
        print(f"usage: {sys.argv[0]} <base-url>   e.g. http://127.0.0.1:8030", file=sys.stderr)
        return 2
    base = arguments[0].rstrip("/")
    problems = [f"static: {problem}" for problem in static_check(base)]
    problems += [f"browser: {problem}" for problem in browser_check(base)]
    if problems:
        for problem in problems:
            log(f"FAIL {problem}")
        return 1
    log("OK: Swagger UI renders from the gateway alone; no request left the machine")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
