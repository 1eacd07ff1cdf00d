"""API sources (``type: api``): JSON pages of an HTTP API read as Ray read tasks.

Requests, retries, backoff, the rate limit and pagination live in
:mod:`raypipe.data._api`; this module plans the read tasks. Numbered pages with a
known total are read by parallel tasks; other pagination follows the API from one
response to the next in one task. Example::

    ds = read_api(cfg.data.source)   # what read_source does for ``type: api``
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from raypipe.data import _api
from raypipe.data._formats import read_records
from raypipe.data.columns import apply_columns

__all__ = ["ApiDatasource", "read_api"]


def _api_pages(source: Any, client: Any, first: Any, numbers: range | None) -> Iterator[pa.Table]:
    """One API read task: ``first`` (already fetched) if given, then the pages numbered
    ``numbers``, or with ``numbers`` None the pages after ``first``, one by one."""
    if first is not None:
        yield from read_records(first.records, first.url)
    if numbers is None:
        pages = _api.following_pages(client, source, first)
    else:
        pages = _api.numbered_pages(client, source, numbers)
    for page in pages:
        yield from read_records(page.records, page.url)


class ApiDatasource(Datasource):
    """A JSON API read as Ray read tasks (see :mod:`raypipe.data._api` for requests and pagination).

    The first page is requested when the datasource is made, on the driver: a bad
    URL, token or ``records_path`` fails before any task starts, and the first
    response tells how many pages there are. Page-numbered pages with a known
    total are addressable: they are split into ``concurrency`` contiguous runs, one
    read task each, sharing ``rate_limit_per_s`` equally. Other pagination follows
    the API from one response to the next in a single task.

    Args:
        source: the :class:`raypipe.config.ApiSource`.
        token: its token (from :func:`raypipe.data._api.resolve_token`), or None.
    """

    def __init__(self, source: Any, token: str | None = None):
        self._source = source
        self._token = token
        self._first = _api.first_page(_api.ApiClient(source, token), source)
        self._pages = _api.page_count(source, self._first)

    @property
    def num_tasks(self) -> int:
        """How many read tasks :meth:`get_read_tasks` makes."""
        if self._pages is None:
            return 1
        return 1 + min(self._source.concurrency, self._pages - 1)

    def get_name(self) -> str:
        return "API"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None) -> list[Any]:
        src, first = self._source, self._first
        meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)

        def task(client: Any, page: Any, numbers: range | None) -> Any:
            return ReadTask(functools.partial(_api_pages, src, client, page, numbers), meta, per_task_row_limit=per_task_row_limit)

        if self._pages is None:
            return [task(_api.ApiClient(src, self._token), first, None)]
        start = src.pagination.start_page
        rest = range(start + 1, start + self._pages)
        runs = min(src.concurrency, len(rest))
        # The first page is already here: one task hands it over without a request.
        tasks = [task(None, first, range(0))]
        share = src.rate_limit_per_s / runs if src.rate_limit_per_s and runs else None
        for i in range(runs):
            lo, hi = rest.start + len(rest) * i // runs, rest.start + len(rest) * (i + 1) // runs
            tasks.append(task(_api.ApiClient(src, self._token, rate_per_s=share), None, range(lo, hi)))
        return tasks


def read_api(source: Any) -> ray.data.Dataset:
    """Read a ``type: api`` source (:class:`raypipe.config.ApiSource`); the first page is
    requested here, on the driver, so a bad URL, token or ``records_path`` fails at once."""
    datasource = ApiDatasource(source, _api.resolve_token(source))
    # As for SQL: one block stream per read task, not hundreds of split blocks.
    return apply_columns(ray.data.read_datasource(datasource, override_num_blocks=datasource.num_tasks), source)
