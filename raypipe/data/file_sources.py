"""File sources: ``csv``, ``parquet``, ``json``/``jsonl`` and ``text``, read by Ray Data file datasources.

Each file is parsed in a read task by the pure parsers of :mod:`raypipe.data._formats`,
which add the reader columns (file and line of every row) and keep rows that do not
parse as error rows. Paths may be files, folders or globs, local or any pyarrow/fsspec
URI (resolved by :mod:`raypipe.runtime.storage`); a glob is expanded on the driver.

=========  =================================================================
type       datasource
=========  =================================================================
csv        :class:`CsvDatasource` (pyarrow streaming CSV, all columns as strings,
           ``invalid_row_handler`` captures ragged lines with their line numbers)
parquet    :class:`ParquetRowsDatasource` (``ParquetFile.iter_batches``, row numbers)
json/jsonl :class:`JsonDatasource` (JSON Lines; top-level arrays; bad lines kept)
text       :class:`TextDatasource` (lines, then vectorized ``extract_regex``)
=========  =================================================================

Example::

    ds = read_csv(cfg.data.source)   # what read_source does for ``type: csv``
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import ray
from ray.data.datasource import FileBasedDatasource, Partitioning

from raypipe.data._formats import CsvFormat, read_csv_stream, read_json_buffer, read_parquet_file, read_text_stream
from raypipe.data.columns import ColumnMap, apply_columns
from raypipe.errors import DataError
from raypipe.runtime.storage import absolute_uri, is_local, resolve

__all__ = [
    "resolve_paths",
    "CsvDatasource",
    "ParquetRowsDatasource",
    "JsonDatasource",
    "TextDatasource",
    "read_csv",
    "read_text",
    "read_json",
    "read_parquet",
]

# --------------------------------------------------------------------------- paths

_GLOB = re.compile(r"[*?\[]")


def resolve_paths(paths: list[str], where: str = "data.source.paths") -> list[str]:
    """Expand globs and make local paths absolute (read tasks may run elsewhere).

    Files and folders pass through (Ray lists folders); a glob is expanded here,
    locally with :mod:`glob` and remotely on the filesystem
    :func:`raypipe.runtime.storage.resolve` opens for the URI.

    Raises:
        DataError: a local path does not exist, a glob matches nothing, or a glob's
            URI names no filesystem pyarrow or fsspec can open.
    """
    out: list[str] = []
    for i, path in enumerate(paths):
        if is_local(path):
            local = absolute_uri(path)
            if _GLOB.search(path):
                found = sorted(p for p in glob.glob(local, recursive=True) if os.path.isfile(p))
                if not found:
                    raise DataError(f"{where}[{i}]: '{path}' matches no files (relative paths are from {os.getcwd()}).")
                out.extend(found)
            elif not os.path.exists(local):
                raise DataError(
                    f"{where}[{i}]: '{path}' does not exist (relative paths are from {os.getcwd()}). "
                    "Hint: check the path, or run from the project folder."
                )
            else:
                out.append(local)
        elif _GLOB.search(path):
            found = _glob_uri(path, f"{where}[{i}]")
            if not found:
                raise DataError(f"{where}[{i}]: '{path}' matches no files.")
            out.extend(found)
        else:
            out.append(path)
    return out


def _glob_uri(uri: str, where: str) -> list[str]:
    """The files a remote glob matches, as URIs with their scheme."""
    scheme = urllib.parse.urlsplit(uri).scheme
    try:
        filesystem, path = resolve(uri, what=where)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    parts = path.split("/")
    fixed = next(i for i, part in enumerate(parts) if _GLOB.search(part))
    base = "/".join(parts[:fixed]) or "/"
    infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    found = sorted(i.path for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatchcase(i.path, path))
    # S3/GCS paths come back as bucket/key: put the scheme back.
    prefix = f"{scheme}://"
    return [p if p.startswith(prefix) else prefix + p.lstrip("/") for p in found]


# --------------------------------------------------------------------------- datasources


class CsvDatasource(FileBasedDatasource):
    """Ray's file datasource for delimited text, parsed by :func:`raypipe.data._formats.read_csv_stream`.

    Ray's own ``CSVDatasource`` infers types (a word in a numeric column fails the
    whole read) and either fails or silently drops ragged lines; this one reads
    strings and turns ragged lines into error rows with their line numbers.
    """

    def __init__(self, paths: list[str], fmt: CsvFormat, **kwargs: Any):
        super().__init__(paths, **kwargs)
        self._fmt = fmt

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        yield from read_csv_stream(f, path, self._fmt)


class TextDatasource(FileBasedDatasource):
    """Lines of text parsed by a named-group regex, with line numbers (see :func:`raypipe.data._formats.parse_lines`).

    Ray's ``read_text`` does not keep line numbers, which quarantine records need,
    so lines are split and matched here, in the read task, vectorized.
    """

    def __init__(self, paths: list[str], pattern: str, encoding: str = "utf-8", **kwargs: Any):
        super().__init__(paths, **kwargs)
        self._pattern = pattern
        self._encoding = encoding

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        yield from read_text_stream(f, path, self._pattern, self._encoding)


class JsonDatasource(FileBasedDatasource):
    """JSON Lines, JSON arrays and single objects, with line/element numbers and bad lines kept."""

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        yield from read_json_buffer(f.read(), path)


class ParquetRowsDatasource(FileBasedDatasource):
    """Parquet files read batch by batch with 1-based row numbers per file.

    Unlike ``ray.data.read_parquet`` it knows each row's position in its file (for
    quarantine records) and never lets a data column named ``path`` hide the file.
    Hive partition folders (``year=2024/``) still become columns.
    """

    def __init__(self, paths: list[str], columns: list[str] | None = None, split_row_groups: bool = False, **kwargs: Any):
        super().__init__(paths, **kwargs)
        self._columns = columns
        self._split_row_groups = split_row_groups

    def _open_input_source(self, filesystem: Any, path: str, **open_args: Any) -> pa.NativeFile:
        return filesystem.open_input_file(path)  # Parquet needs random access

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        yield from read_parquet_file(f, path, self._columns)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None) -> list[Any]:
        """One task per file, or, with ``split_row_groups`` and fewer files than
        ``parallelism``, files cut into runs of row groups: one 5M-row file is otherwise
        ONE read task, and everything fused after it runs on one core."""
        paths = self._paths()
        if not self._split_row_groups or len(paths) >= parallelism:
            return super().get_read_tasks(parallelism, per_task_row_limit=per_task_row_limit, data_context=data_context)
        try:
            tasks = _row_group_tasks(self, paths, parallelism, per_task_row_limit)
        except (pa.ArrowInvalid, OSError):
            tasks = []  # an unreadable footer: the per-file read task reports it, naming the file
        return tasks or super().get_read_tasks(parallelism, per_task_row_limit=per_task_row_limit, data_context=data_context)


def _row_group_tasks(ds: ParquetRowsDatasource, paths: list[str], parallelism: int, row_limit: int | None) -> list[Any]:
    """Read tasks over runs of consecutive row groups, about ``parallelism`` in all.

    Footers are read here, on the driver (a few KiB per file). Row numbers stay those of
    the whole file, and Hive partition columns are added as the file reader adds them.
    """
    import pyarrow.parquet as pq
    from ray.data.block import BlockMetadata
    from ray.data.datasource import ReadTask
    from ray.data.datasource.file_based_datasource import _add_partitions
    from ray.data.datasource.partitioning import PathPartitionParser

    fs = ds._filesystem
    files: list[tuple[str, list[int]]] = []  # path, rows of each row group
    for path in paths:
        with ds._open_input_source(fs, path) as f:
            meta = pq.ParquetFile(f).metadata
        files.append((path, [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]))
    total_groups = sum(len(sizes) for _, sizes in files)
    pieces: list[tuple[str, list[int], int, int]] = []  # path, row groups, first row, rows
    for path, sizes in files:
        # Runs per file in proportion to its row groups, at least one; up to two per
        # wanted task, since equal runs balance better over the cores (5 row groups in
        # 4 runs leave one core idle for a whole run at the end; in 5 runs, a run less).
        runs = max(1, min(len(sizes), round(2 * parallelism * len(sizes) / max(1, total_groups))))
        bounds = [round(i * len(sizes) / runs) for i in range(runs + 1)]
        for a, b in zip(bounds, bounds[1:]):
            if b > a:
                pieces.append((path, list(range(a, b)), sum(sizes[:a]), sum(sizes[a:b])))
    columns, partitioning = ds._columns, ds._partitioning

    def make(path: str, row_groups: list[int], first_row: int) -> Any:
        def read() -> Iterator[pa.Table]:
            partitions = PathPartitionParser(partitioning)(path) if partitioning is not None else {}
            with ds._open_input_source(fs, path) as f:
                for block in read_parquet_file(f, path, columns, row_groups=row_groups, first_row=first_row):
                    yield _add_partitions(block, partitions) if partitions else block
        return read

    total_rows = sum(p[3] for p in pieces) or 1
    size = ds.estimate_inmemory_data_size() or 0
    return [
        ReadTask(make(path, rgs, first), BlockMetadata(num_rows=rows, size_bytes=int(size * rows / total_rows), exec_stats=None, input_files=[path]),
                 per_task_row_limit=row_limit)
        for path, rgs, first, rows in pieces
    ]


def _datasource(cls: type, source: Any, **kwargs: Any) -> Any:
    paths = resolve_paths(list(source.paths))
    try:
        return cls(paths, **kwargs)
    except (OSError, ValueError) as exc:
        raise DataError(f"data.source.paths: cannot list {', '.join(source.paths)} ({exc}).") from exc


# --------------------------------------------------------------------------- readers


def read_csv(source: Any) -> ray.data.Dataset:
    """Read a ``type: csv`` source (:class:`raypipe.config.CsvSource`): every column a string."""
    return apply_columns(ray.data.read_datasource(_datasource(CsvDatasource, source, fmt=CsvFormat.of(source))), source)


def read_text(source: Any) -> ray.data.Dataset:
    """Read a ``type: text`` source: each line matched by ``pattern``'s named groups."""
    datasource = _datasource(TextDatasource, source, pattern=source.pattern, encoding=source.encoding)
    return apply_columns(ray.data.read_datasource(datasource), source)


def read_json(source: Any) -> ray.data.Dataset:
    """Read a ``type: json`` or ``jsonl`` source: JSON Lines, arrays or single objects."""
    return apply_columns(ray.data.read_datasource(_datasource(JsonDatasource, source)), source)


def read_parquet(source: Any, split_row_groups: bool = False) -> ray.data.Dataset:
    """Read a ``type: parquet`` source: only the selected columns, Hive partitions as columns.

    ``split_row_groups``: cut files into runs of row groups when there are fewer files
    than read tasks wanted (see :meth:`ParquetRowsDatasource.get_read_tasks`).
    """
    wanted = ColumnMap.of(source).source_columns()
    datasource = _datasource(ParquetRowsDatasource, source, columns=wanted, partitioning=Partitioning("hive"),
                             split_row_groups=split_row_groups)
    return apply_columns(ray.data.read_datasource(datasource), source)
