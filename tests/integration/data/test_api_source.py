"""The ``api`` source against a local HTTP server that the tests start.

The server (``ThreadingHTTPServer`` on a free port, in a thread) serves 50 pages of
20 records in each pagination style and injects failures: the first request for
every 5th page gets 429 (with ``Retry-After``), the first two for every 7th page
get 500. Every read must still return each of the 1,000 records exactly once.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from raypipe.config import parse_config
from raypipe.data._api import ApiClient, first_page, following_pages
from raypipe.data.api_source import ApiDatasource
from raypipe.data.ingest import ingest
from raypipe.data.sources import read_source, unwrap_task_errors
from raypipe.errors import ConfigError, DataError

from _net import free_port

pytestmark = pytest.mark.ray

PAGES, PER_PAGE = 50, 20
TOKEN = "tok-s3cret-123"


def _records(page: int) -> list[dict]:
    if not 1 <= page <= PAGES:
        return []
    first = (page - 1) * PER_PAGE + 1
    return [{"id": i, "value": i * 0.5, "name": f"n{i}"} for i in range(first, first + PER_PAGE)]


class _Handler(BaseHTTPRequestHandler):
    server: _ApiServer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: object, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        srv = self.server
        with srv.lock:
            srv.requests.append((time.monotonic(), self.path))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, {"error": "bad token", "echo": self.headers.get("Authorization")})
        if url.path == "/down":
            return self._send(503, {"error": "maintenance"})
        if url.path == "/text":
            data = b"<html>not json</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        page = int(query.get("page") or query.get("cursor", "c1")[1:])
        with srv.lock:
            srv.attempts[(url.path, page)] += 1
            attempt = srv.attempts[(url.path, page)]
        if page % 5 == 0 and attempt == 1:
            return self._send(429, {"error": "slow down"}, {"Retry-After": "0"})
        if page % 7 == 0 and attempt <= 2:
            return self._send(500, {"error": "boom"})
        records = _records(page)
        more = page < PAGES
        if url.path == "/late-failure":  # the first page is fine, the others always fail
            if page > 1:
                return self._send(503, {"error": "overloaded"})
            return self._send(200, {"items": records, "pages": 5})
        if url.path == "/paged":  # page numbers, total in the body
            return self._send(200, {"data": {"items": records}, "meta": {"total_pages": PAGES}})
        if url.path == "/paged-open":  # page numbers, no total: read until an empty page
            return self._send(200, {"items": records})
        if url.path == "/linked":  # relative next links in the body
            return self._send(200, {"items": records, "links": {"next": f"/linked?page={page + 1}" if more else None}})
        if url.path == "/link-header":  # a bare list; the next page in the Link header
            headers = {"Link": f'<http://127.0.0.1:{srv.server_port}/link-header?page={page + 1}>; rel="next"'} if more else {}
            return self._send(200, records, headers)
        if url.path == "/cursor":
            return self._send(200, {"results": records, "next_cursor": f"c{page + 1}" if more else None})
        return self._send(404, {"error": "no such path"})


class _ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.attempts: Counter = Counter()
        self.requests: list[tuple[float, str]] = []

    def reset(self) -> None:
        with self.lock:
            self.attempts.clear()
            self.requests.clear()


@pytest.fixture(scope="module")
def api_server():
    server = _ApiServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def api(api_server, monkeypatch):
    """The server's base URL, with its token in the environment and fresh failure counters."""
    api_server.reset()
    monkeypatch.setenv("RP_TEST_API_TOKEN", TOKEN)
    return f"http://127.0.0.1:{api_server.server_port}"


def _source(url: str, **spec):
    raw = {"type": "api", "url": url, "auth": {"token_env": "RP_TEST_API_TOKEN"}, "backoff_s": 0.01, **spec}
    return parse_config({"name": "t", "data": {"source": raw}}, "api.yaml").data.source


def _ids(ds) -> list[int]:
    import ray

    with unwrap_task_errors("test"):
        tables = ray.get(ds.select_columns(["id"]).to_arrow_refs())
    return sorted(i for t in tables for i in t.column("id").to_pylist())


ALL_IDS = list(range(1, PAGES * PER_PAGE + 1))
STYLES = {
    "page_total": ("/paged", {"records_path": "data.items", "pagination": {"type": "page", "total_pages_path": "meta.total_pages"}}),
    "page_open": ("/paged-open", {"records_path": "items", "pagination": {"type": "page"}}),
    "next_link_body": ("/linked", {"records_path": "items", "pagination": {"type": "next_link", "next_path": "links.next"}}),
    "next_link_header": ("/link-header", {"pagination": {"type": "next_link"}}),
    "cursor": ("/cursor", {"records_path": "results", "pagination": {"type": "cursor", "cursor_param": "cursor", "cursor_path": "next_cursor"}}),
}


@pytest.mark.parametrize("style", STYLES)
def test_every_pagination_style_reads_all_records_despite_429_and_500(ray_cluster, api, api_server, style):
    path, spec = STYLES[style]
    assert _ids(read_source(_source(api + path, **spec))) == ALL_IDS
    # Every 5th page was retried once (a 429), every 7th twice (500s); 35 got a 429, then a 500.
    retried = {page: n for (_, page), n in api_server.attempts.items() if n > 1}
    assert retried == {**{p: 2 for p in range(5, 51, 5)}, **{p: 3 for p in range(7, 50, 7)}}


def test_addressable_pages_are_read_by_parallel_tasks(ray_cluster, api, api_server, tmp_path):
    path, spec = STYLES["page_total"]
    source = _source(api + path, concurrency=4, name="items", **spec)
    datasource = ApiDatasource(source, TOKEN)
    tasks = datasource.get_read_tasks(1)
    # The first page (already fetched on the driver) and the other 49 in 4 runs of pages.
    assert datasource.num_tasks == len(tasks) == 5
    columns = {"id": {"type": "int", "min": 1}, "value": {"type": "float"}, "name": {"type": "string", "regex": "n[0-9]+"}}
    cfg = parse_config(
        {"name": "t", "data": {"source": {"type": "api", "url": api + path, "name": "items", "auth": {"token_env": "RP_TEST_API_TOKEN"}, "backoff_s": 0.01, **spec}, "schema": {"columns": columns}}},
        "api.yaml",
    )
    result = ingest(cfg, str(tmp_path / "q"))
    assert result.counts == {"ingested": 1000, "valid": 1000, "quarantined": 0, "by_rule": {}, "by_column": {}}
    pages = {p for _, p in api_server.attempts if 1 <= p <= PAGES}
    assert pages == set(range(1, 51))


def test_rate_limit_spaces_requests(ray_cluster, api, api_server):
    source = _source(api + "/paged-open", records_path="items", pagination={"type": "page", "max_pages": 60}, rate_limit_per_s=40)
    client = ApiClient(source, TOKEN)
    first = first_page(client, source)
    pages = [first, *following_pages(client, source, first)]
    assert [r["id"] for p in pages for r in p.records] == ALL_IDS
    assert [p.number for p in pages] == list(range(1, PAGES + 1))
    # 51 pages (the last one empty) and 23 retries, sent at most 40 per second.
    times = [t for t, _ in api_server.requests]
    assert len(times) == 74
    assert times[-1] - times[0] >= 73 / 40 - 0.05


def test_clear_errors_after_retries_and_for_bad_answers(ray_cluster, api, monkeypatch):
    with pytest.raises(DataError) as err:
        read_source(_source(api + "/down", max_retries=2))
    assert str(err.value) == (
        f"data.source.url: GET {api}/down failed 3 time(s) (last: HTTP 503 Service Unavailable). "
        "Hint: the API keeps failing or rate-limiting; raise max_retries or backoff_s, or lower rate_limit_per_s."
    )
    with pytest.raises(DataError, match=r"data.source.url: GET .*/nowhere was refused \(HTTP 404 Not Found: .*no such path.*Hint: check the url"):
        read_source(_source(api + "/nowhere"))
    with pytest.raises(DataError, match=r"did not return JSON \(text/html: <html>not json</html>\)"):
        read_source(_source(api + "/text"))
    with pytest.raises(DataError, match=r"data.source.records_path: 'data.itemz' is not in the response of .* \(keys there: items\). Did you mean 'items'\?"):
        read_source(_source(api + "/paged", records_path="data.itemz"))
    with pytest.raises(DataError, match=r"expected a list of records at 'meta' of .*got a JSON dict"):
        read_source(_source(api + "/paged", records_path="meta"))
    with pytest.raises(DataError, match=r"data.source.pagination.max_pages: .* has more than 10 pages"):
        read_source(_source(api + "/paged", records_path="data.items", pagination={"type": "page", "total_pages_path": "meta.total_pages", "max_pages": 10}))
    # A wrong token: refused at once (no retries), and the token is not in the message.
    monkeypatch.setenv("RP_TEST_API_TOKEN", "wrong-" + TOKEN)
    with pytest.raises(DataError, match=r"data.source.auth: GET .* was refused \(HTTP 401 Unauthorized.*Hint: check \$RP_TEST_API_TOKEN") as err:
        read_source(_source(api + "/paged"))
    assert TOKEN not in str(err.value)
    monkeypatch.delenv("RP_TEST_API_TOKEN")
    with pytest.raises(ConfigError, match="data.source.auth.token_env: environment variable RP_TEST_API_TOKEN is not set"):
        read_source(_source(api + "/paged"))


def test_a_page_failing_in_a_read_task_fails_the_read_clearly(ray_cluster, api):
    source = _source(api + "/late-failure", records_path="items", max_retries=1, pagination={"type": "page", "total_pages_path": "pages"})
    with pytest.raises(DataError, match=r"data.source.url: GET .*/late-failure\?page=[2-5] failed 2 time\(s\) \(last: HTTP 503 Service Unavailable\)"):
        _ids(read_source(source))


def test_unreachable_api_is_retried_then_named(ray_cluster):
    port = free_port()  # a port nobody listens on
    source = parse_config({"name": "t", "data": {"source": {"type": "api", "url": f"http://127.0.0.1:{port}/x", "max_retries": 1, "backoff_s": 0}}}).data.source
    with pytest.raises(DataError, match=rf"GET http://127.0.0.1:{port}/x failed 2 time\(s\) \(last: ConnectionError: "):
        read_source(source)
