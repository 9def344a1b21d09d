"""Run queries: prune a snapshot's batches, load the surviving manifests
(hash-verified), and execute the compiled SQL in DuckDB.

DuckDB sees only in-memory Arrow tables and runs with external access
disabled, so a query cannot read or write any file.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .model import Span
from .query import Query, compile_sql, prune
from .snapshot import Snapshot, empty_manifest


@dataclass(frozen=True)
class QueryResult:
    """Rows (or a count) and how they were found."""

    table: pa.Table
    sql: str
    params: list[object]
    manifests_scanned: int
    manifests_total: int
    commit_id: str | None


def connect() -> Any:
    """A DuckDB connection that can touch no file and speaks UTC."""
    import duckdb

    connection = duckdb.connect(config={"enable_external_access": False, "threads": 2})
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def load_manifests(snapshot: Snapshot, manifest_ids: list[str]) -> pa.Table:
    """The rows of the given manifests as one table (extra columns unified)."""
    if not manifest_ids:
        return empty_manifest()
    if len(manifest_ids) == 1:
        tables = [snapshot.manifest(manifest_ids[0])]
    else:
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="improv-manifest") as pool:
            tables = list(pool.map(snapshot.manifest, manifest_ids))
    return pa.concat_tables(tables, promote_options="permissive")


def run(snapshot: Snapshot, query: Query, spans: tuple[Span, ...] | None, count: bool = False) -> QueryResult:
    """Execute ``query`` on ``snapshot``; ``spans`` are the dataset's, if any."""
    batches = snapshot.batches
    survivors = prune(batches, query, spans).column("manifest").to_pylist()
    rows = load_manifests(snapshot, survivors)
    if not survivors:  # nothing to scan: columns only other batches hold cannot be checked
        for name in [*(query.columns or ()), *(c.column for c in query.where)]:
            if name not in rows.schema.names:
                rows = rows.append_column(name, pa.nulls(0, pa.string()))
    sql, params = compile_sql(query, spans, rows.schema, count=count)
    connection = connect()
    try:
        connection.register("images", rows)
        table = connection.sql(sql, params=params).to_arrow_table()
    finally:
        connection.close()
    return QueryResult(table, sql, params, len(survivors), batches.num_rows, snapshot.commit_id)
