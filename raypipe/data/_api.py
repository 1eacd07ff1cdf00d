"""JSON HTTP APIs for the ``api`` source: requests, retries, a rate limit, pagination. No Ray.

:class:`ApiClient` sends GET requests with the source's params, headers and token;
a 429, a 5xx or no response at all is retried up to ``max_retries`` times, waiting
``backoff_s * 2**retry`` (with jitter, at most ``max_backoff_s``) or what the
server's ``Retry-After`` asks; ``rate_limit_per_s`` spaces the requests. Other 4xx
responses fail at once. After the last retry the error names the URL and the last
status, never the token.

Pagination (``pagination.type``):

=========  =====================================================================
none       one request
next_link  follow the next URL: a dotted path in the body, or the Link header
page       a page-number parameter; with a total (``total_pages_path``, or
           ``total_records_path`` and ``page_size``) in the first response the
           pages are addressable and read in parallel, else one by one until an
           empty (or short) page
cursor     send the cursor of each response with the next request; an empty or
           missing cursor, or an empty page, ends the read
=========  =====================================================================

Example::

    client = ApiClient(source, token=os.environ["API_TOKEN"])
    first = first_page(client, source)
    for page in following_pages(client, source, first):
        page.records
"""

from __future__ import annotations

import email.utils
import os
import random
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from raypipe.errors import ConfigError, DataError, did_you_mean

__all__ = ["ApiClient", "Page", "resolve_token", "first_page", "following_pages", "page_count", "numbered_pages", "dotted"]

#: Statuses worth retrying: the server is busy or failing, not refusing the request.
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MISSING = object()


def resolve_token(source: Any) -> str | None:
    """The token of ``source.auth`` from the environment (of the driver), or None without auth.

    Raises:
        ConfigError: the environment variable is not set.
    """
    if source.auth is None:
        return None
    token = os.environ.get(source.auth.token_env)
    if not token:
        raise ConfigError(
            f"data.source.auth.token_env: environment variable {source.auth.token_env} is not set (or empty). "
            f"Hint: export {source.auth.token_env}=... before running."
        )
    return token


def dotted(body: Any, path: str | None) -> Any:
    """The value at a dotted path (``data.items``, ``links.next``, ``items.0.id``), or a sentinel if absent."""
    if not path:
        return body
    node = body
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


@dataclass
class Page:
    """One response: its records and what the next request needs.

    Attributes:
        url: the URL requested, query included (recorded in ``__rp_file``).
        number: 1-based position in the read.
        records: the list at ``records_path``.
        body: the whole decoded JSON body.
        links: the ``Link`` header's targets by ``rel``.
    """

    url: str
    number: int
    records: list
    body: Any = None
    links: dict[str, str] = field(default_factory=dict)


class _Throttle:
    """Spaces calls at least ``1 / rate`` seconds apart."""

    def __init__(self, rate_per_s: float | None):
        self.interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self._next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class ApiClient:
    """GET JSON with retries, backoff and a rate limit; one per read task (it holds a session).

    Args:
        source: the :class:`raypipe.config.ApiSource`.
        token: the token from :func:`resolve_token`, or None.
        rate_per_s: this client's share of ``rate_limit_per_s`` (default: all of it).
    """

    def __init__(self, source: Any, token: str | None = None, rate_per_s: float | None = None):
        self.source = source
        self._token = token
        self._throttle = _Throttle(rate_per_s if rate_per_s is not None else source.rate_limit_per_s)
        self._session: Any = None

    def __repr__(self) -> str:
        return f"ApiClient({self.source.url})"

    def __getstate__(self) -> dict[str, Any]:
        # A session holds sockets: each Ray task opens its own.
        return {**self.__dict__, "_session": None}

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", **self.source.headers}
        auth = self.source.auth
        if auth is not None and self._token:
            headers[auth.header] = f"{auth.scheme} {self._token}" if auth.scheme else self._token
        return headers

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _snippet(self, response: Any) -> str:
        text = " ".join((response.text or "").split())
        return self._scrub(text[:200] + ("..." if len(text) > 200 else ""))

    def get(self, url: str, params: Mapping[str, Any] | None = None) -> tuple[Any, str, dict[str, str]]:
        """GET ``url`` and decode its JSON body, retrying busy or failing servers.

        Returns:
            ``(body, the URL requested with its query, Link header targets by rel)``.

        Raises:
            DataError: a 4xx other than 408/429, a body that is not JSON, or still no
                success after ``max_retries`` retries (the message has the last status).
        """
        import requests

        if self._session is None:
            self._session = requests.Session()
        src = self.source
        attempts = src.max_retries + 1
        last = "no response"
        shown = requests.Request("GET", url, params=params).prepare().url or url
        for attempt in range(attempts):
            self._throttle.wait()
            wait = min(src.max_backoff_s, src.backoff_s * 2**attempt) * (0.5 + random.random() / 2)
            try:
                response = self._session.get(url, params=params, headers=self._headers(), timeout=src.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = self._scrub(f"{type(exc).__name__}: {exc}")
            else:
                shown = response.url
                status = response.status_code
                if status < 400:
                    try:
                        body = response.json()
                    except ValueError:
                        kind = response.headers.get("Content-Type", "no content type")
                        raise DataError(
                            f"data.source.url: GET {shown} did not return JSON ({kind}: {self._snippet(response)})."
                        ) from None
                    links = {rel: info["url"] for rel, info in response.links.items() if "url" in info}
                    return body, shown, links
                reason = f"HTTP {status} {response.reason or ''}".strip()
                if status not in RETRY_STATUS:
                    if status in (401, 403):
                        env = f"${src.auth.token_env}" if src.auth else "a token (data.source.auth is not set)"
                        hint = f"Hint: check {env} and the API's permissions."
                        where = "data.source.auth"
                    else:
                        hint, where = "Hint: check the url and params.", "data.source.url"
                    raise DataError(f"{where}: GET {shown} was refused ({reason}: {self._snippet(response)}). {hint}")
                last = reason
                after = _retry_after(response.headers.get("Retry-After"))
                if after is not None:
                    wait = min(src.max_backoff_s, after)
            if attempt + 1 < attempts:
                time.sleep(wait)
        raise DataError(
            f"data.source.url: GET {shown} failed {attempts} time(s) (last: {last}). "
            "Hint: the API keeps failing or rate-limiting; raise max_retries or backoff_s, or lower rate_limit_per_s."
        )


def _records(body: Any, source: Any, url: str) -> list:
    path = source.records_path
    found = dotted(body, path)
    if found is _MISSING:
        parent = dotted(body, path.rsplit(".", 1)[0]) if "." in path else body
        keys = list(parent) if isinstance(parent, Mapping) else []
        raise DataError(
            f"data.source.records_path: '{path}' is not in the response of {url}"
            + (f" (keys there: {', '.join(map(str, keys[:20]))}).{did_you_mean(path.rsplit('.', 1)[-1], keys)}" if keys else ".")
        )
    if found is None:
        return []
    if not isinstance(found, list):
        where = f"'{path}'" if path else "the top level"
        raise DataError(
            f"data.source.records_path: expected a list of records at {where} of {url}, got a JSON {type(found).__name__}. "
            "Hint: set records_path to the list (e.g. data.items)."
        )
    return found


def _fetch(client: ApiClient, url: str, params: Mapping[str, Any] | None, number: int) -> Page:
    body, shown, links = client.get(url, params)
    return Page(shown, number, _records(body, client.source, shown), body, links)


def _page_params(source: Any, number: int) -> dict[str, Any]:
    p = source.pagination
    params = {**source.params, p.page_param: number}
    if p.size_param:
        params[p.size_param] = p.page_size
    return params


def first_page(client: ApiClient, source: Any) -> Page:
    """Request the first page (on the driver: a bad URL, token or records_path fails before any task)."""
    p = source.pagination
    params = _page_params(source, p.start_page) if p.type == "page" else dict(source.params)
    return _fetch(client, source.url, params, 1)


def page_count(source: Any, first: Page) -> int | None:
    """How many pages a page-numbered API has, from its first response; None when unknown.

    Raises:
        DataError: the total is not a number, or exceeds ``pagination.max_pages``.
    """
    p = source.pagination
    if p.type != "page" or not (p.total_pages_path or p.total_records_path):
        return None
    path = p.total_pages_path or p.total_records_path
    value = dotted(first.body, path)
    try:
        total = int(value)
    except (TypeError, ValueError):
        where = "total_pages_path" if p.total_pages_path else "total_records_path"
        raise DataError(
            f"data.source.pagination.{where}: expected a number at '{path}' in the response of {first.url}, "
            f"got {'nothing' if value is _MISSING else repr(value)}."
        ) from None
    pages = total if p.total_pages_path else -(-total // p.page_size)
    _check_max_pages(source, pages, first.url)
    return max(pages, 1)


def _check_max_pages(source: Any, pages: int, url: str) -> None:
    limit = source.pagination.max_pages
    if pages > limit:
        raise DataError(
            f"data.source.pagination.max_pages: {url} has more than {limit} pages. "
            "Hint: raise max_pages if that many pages are expected (it guards against endless pagination)."
        )


def numbered_pages(client: ApiClient, source: Any, numbers: range) -> Iterator[Page]:
    """The pages with these page numbers, in order."""
    for n in numbers:
        yield _fetch(client, source.url, _page_params(source, n), n - source.pagination.start_page + 1)


def following_pages(client: ApiClient, source: Any, first: Page) -> Iterator[Page]:
    """The pages after ``first``, one request after the other, until the API says there are no more.

    Raises:
        DataError: a request fails (see :meth:`ApiClient.get`), a next link repeats
            one already followed, or there are more than ``max_pages`` pages.
    """
    p = source.pagination
    page = first
    seen = {first.url}
    while True:
        number = page.number + 1
        if p.type == "next_link":
            target = dotted(page.body, p.next_path) if p.next_path else page.links.get("next")
            if not target or target is _MISSING:
                return
            url = urllib.parse.urljoin(page.url, str(target))
            if url in seen:
                raise DataError(f"data.source.pagination: {page.url} links back to {url}, already read. Hint: check next_path.")
            seen.add(url)
            _check_max_pages(source, number, first.url)
            page = _fetch(client, url, None, number)
        elif p.type == "cursor":
            cursor = dotted(page.body, p.cursor_path)
            if cursor in (None, "") or cursor is _MISSING or not page.records:
                return
            _check_max_pages(source, number, first.url)
            page = _fetch(client, source.url, {**source.params, p.cursor_param: cursor}, number)
        elif p.type == "page":
            if not page.records or (p.page_size and len(page.records) < p.page_size):
                return
            _check_max_pages(source, number, first.url)
            page = _fetch(client, source.url, _page_params(source, p.start_page + number - 1), number)
        else:
            return
        if page.records:
            yield page
        elif p.type == "next_link":
            continue  # an empty page in the middle of a linked chain: keep following
        else:
            return
