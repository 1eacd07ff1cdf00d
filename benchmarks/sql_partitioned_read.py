"""Benchmark: a range-partitioned ``sql`` source read vs one query, on PostgreSQL.

Not collected by pytest (no ``test_`` prefix); run by hand against a server:

    python benchmarks/sql_partitioned_read.py [--url postgresql://postgres@127.0.0.1:5432/test]
        [--rows 1000000] [--partitions 4] [--repeat 2] [--quick]

Makes a table of ``--rows`` rows (bigint id, double value, timestamp) with
``generate_series``, then reads it to a materialized Ray dataset:

- ``single_query``: one query on the driver (psycopg ``fetchall``, then Arrow), no Ray;
- ``ray_read_sql``: ``ray.data.read_sql`` as documented (its ``shard_keys`` hash
  sharding needs ``MOD(ABS(MD5(..)))``, which PostgreSQL rejects: one task);
- ``raypipe_1``: the raypipe source without ``partition`` (one streaming task);
- ``raypipe_N``: the raypipe source with ``partition: {column: id, num_partitions: N}``.

Every variant must return the same row count and sum of ids. Prints one JSON line
per variant (median and min seconds) and the ratios against ``ray_read_sql``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("RAYPIPE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="10,000 rows, one repeat (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeat = 10_000, 1

    import psycopg
    import pyarrow.compute as pc
    import ray

    from raypipe.config import parse_config
    from raypipe.data._sql import rows_to_table
    from raypipe.data.sources import read_source

    table = f"rp_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f"CREATE UNLOGGED TABLE {table} (id bigint PRIMARY KEY, value double precision, ts timestamp)")
        conn.execute(
            f"INSERT INTO {table} SELECT g, (g % 1000) * 0.5, timestamp '2024-01-01' + g * interval '1 second' "
            f"FROM generate_series(1, {args.rows}) AS g"
        )
        conn.execute(f"ANALYZE {table}")
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False

    def source(partitions: int | None):
        spec = {"type": "sql", "url": args.url, "table": table}
        if partitions:
            spec["partition"] = {"column": "id", "num_partitions": partitions}
        return parse_config({"name": "bench", "data": {"source": spec}}).data.source

    def single_query() -> tuple[int, int]:
        with psycopg.connect(args.url) as conn:
            cur = conn.execute(f"SELECT * FROM {table}")
            t = rows_to_table([d[0] for d in cur.description], cur.fetchall())
        return t.num_rows, pc.sum(t["id"]).as_py()

    def totals(ds) -> tuple[int, int]:
        # Per-block sums added up here: Dataset.aggregate would add a shuffle to the timing.
        blocks = ray.get(ds.materialize().to_arrow_refs())
        return sum(b.num_rows for b in blocks), sum(pc.sum(b["id"]).as_py() or 0 for b in blocks)

    variants = {
        "single_query": single_query,
        "ray_read_sql": lambda: totals(ray.data.read_sql(f"SELECT * FROM {table}", lambda: psycopg.connect(args.url))),
        "raypipe_1": lambda: totals(read_source(source(None))),
        f"raypipe_{args.partitions}": lambda: totals(read_source(source(args.partitions))),
    }
    expected = (args.rows, args.rows * (args.rows + 1) // 2)
    try:
        totals(read_source(source(args.partitions)))  # warm the Ray workers up
        results = {}
        for name, fn in variants.items():
            seconds = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                got = fn()
                seconds.append(time.perf_counter() - started)
                assert got == expected, (name, got, expected)
            results[name] = {"variant": name, "rows": args.rows, "median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3)}
            print(json.dumps(results[name]))
        base = results["ray_read_sql"]["median_s"]
        print(json.dumps({"ratio_vs_ray_read_sql": {k: round(base / v["median_s"], 2) for k, v in results.items()}, "load_avg": os.getloadavg()}))
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


if __name__ == "__main__":
    main()
