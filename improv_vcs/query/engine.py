"""Run queries: prune a snapshot's batches, load the surviving manifests
(hash-verified), and execute the compiled SQL in DuckDB.

DuckDB sees only in-memory Arrow tables and runs with external access
disabled, so a query cannot read or write any file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import ImprovError, InvalidInputError, StorageError
from ..core.model import Span
from ..core.sql import thread_connection
from ..snapshot.manifest import CORE_ORDER
from ..snapshot.reader import SnapshotReader
from .filters import Query
from .planning import compile_sql, fully_covered, needed_columns, prune
from .provenance import Plan, plan


@dataclass(frozen=True)
class QueryResult:
    """Rows (or a count) and how they were found."""

    table: pa.Table
    sql: str
    params: list[object]
    manifests_scanned: int
    manifests_total: int
    commit_id: str | None
    batches_counted_whole: int = 0
    record_ids: tuple[str, ...] = ()


def _execute(connection: Any, sql: str, params: list[object]) -> pa.Table:
    """Run ``sql``; a DuckDB failure becomes an :class:`ImprovError` with a
    one-line message (callers never see a raw ``duckdb`` exception)."""
    import duckdb

    try:
        return connection.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise query_error(exc) from None


def query_error(exc: BaseException) -> BaseException:
    """The :mod:`improv_vcs.core.errors` exception standing for a DuckDB error:
    :class:`InvalidInputError` for a query DuckDB cannot bind, convert or
    run (exit 2), :class:`StorageError` when it runs out of memory or disk,
    ``KeyboardInterrupt`` when interrupted, :class:`ImprovError` otherwise."""
    import duckdb

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    message = f"the query failed in DuckDB: {lines[0] if lines else type(exc).__name__}"
    if isinstance(exc, duckdb.InterruptException):
        return KeyboardInterrupt()
    if isinstance(exc, (duckdb.OutOfMemoryException, duckdb.IOException)):
        return StorageError(message)
    if isinstance(exc, (duckdb.ProgrammingError, duckdb.DataError, duckdb.NotSupportedError)):
        return InvalidInputError(message)
    return ImprovError(message)


def _add_unscanned_columns(
    snapshot: SnapshotReader, batches: pa.Table, rows: pa.Table, query: Query
) -> pa.Table:
    """Null columns, typed as in the snapshot, for the extra columns a query
    names that only unscanned batches hold; so a filter on them matches
    nothing instead of failing, and its value is still type-checked."""
    referenced = [*(query.columns or ()), *(c.column for c in query.where)]
    for name in dict.fromkeys(referenced):
        if name in rows.schema.names or name in CORE_ORDER:
            continue
        extras = batches.column("extra_columns")
        hits = pc.equal(pc.list_flatten(extras), name)
        holders = pc.filter(pc.list_parent_indices(extras), hits)
        if len(holders):
            holder = batches.column("manifest")[holders[0].as_py()].as_py()
            sample = snapshot.manifest(holder, [name])
            rows = rows.append_column(name, pa.nulls(rows.num_rows, sample.schema.field(name).type))
    return rows


def _with_vectors(table: pa.Table, vectors: dict[str, pa.Table]) -> pa.Table:
    """``table`` with each vector column's record ids replaced by those records' vectors."""
    for name, found in vectors.items():
        if name in table.column_names:
            ids = found.column("record_id").combine_chunks()
            at = pc.index_in(table.column(name), value_set=ids)
            picked = found.column("vector").take(at)
            table = table.set_column(table.schema.get_field_index(name), name, picked)
    return table


def _plan(
    snapshot: SnapshotReader,
    query: Query,
    spans: tuple[Span, ...] | None,
    record_ids: bool,
    only: Sequence[str] | None = None,
) -> Plan:
    """The batches ``query`` must scan (of ``only``, the manifests given) and
    its provenance work."""
    candidates = prune(snapshot.batches, query, spans)
    if only is not None:
        candidates = candidates.filter(
            pc.is_in(candidates.column("manifest"), pa.array(list(only), pa.string()))
        )
    if query.samples:  # only batches holding one of the samples (or rows without one)
        holding = snapshot.manifests_with_samples(query.samples)
        candidates = candidates.filter(
            pc.is_in(candidates.column("manifest"), pa.array(sorted(holding), pa.string()))
        )
    return plan(snapshot, query, spans, candidates, record_ids)


def scanned(snapshot: SnapshotReader, query: Query, spans: tuple[Span, ...] | None) -> pa.Table:
    """The batches (index rows) a run of ``query`` reads, pruned as it prunes:
    the partitions of a scan split over processes."""
    return _plan(snapshot, query, spans, False).batches


def run(
    snapshot: SnapshotReader,
    query: Query,
    spans: tuple[Span, ...] | None,
    count: bool = False,
    record_ids: bool = False,
    only: Sequence[str] | None = None,
) -> QueryResult:
    """Execute ``query`` on ``snapshot``; ``spans`` are the dataset's, if any.

    A count adds the stored row counts of batches the filters cover whole and
    scans only the others. With ``record_ids``, the result also names every
    provenance record the selection used (the matching records of its images).
    With ``only``, just the batches of those manifests are read (a partition).
    """
    batches = snapshot.batches
    planned = _plan(snapshot, query, spans, record_ids and not count, only)
    candidates = planned.batches
    counted = whole_batches = 0
    if count:
        whole = fully_covered(candidates, query, spans)
        counted = pc.sum(candidates.filter(whole).column("rows")).as_py() or 0
        whole_batches = pc.sum(whole).as_py() or 0
        candidates = candidates.filter(pc.invert(whole))
    survivors = candidates.column("manifest").to_pylist()
    rows = snapshot.rows(survivors, needed_columns(query, spans, count))
    rows = _add_unscanned_columns(snapshot, batches, rows, query)
    sql, params = compile_sql(query, spans, rows.schema, count=count, provenance=planned.sql)
    connection = thread_connection()
    tables = {"images": rows, **planned.tables}
    if query.samples or query.sample_quality or query.sample_columns:
        from ..snapshot.registry import latest

        tables["samples"] = latest(snapshot.sample_versions())
    for name, table in tables.items():
        connection.register(name, table)
    used: list[str] = []
    try:
        table = _execute(connection, sql, params)
        if record_ids and not count and planned.sql.ctes:
            connection.register("cited", table.select(["image_id"]))
            tables["cited"] = table
            for kind in query.provenance_kinds():
                found = _execute(
                    connection,
                    f"WITH {', '.join(planned.sql.ctes)} SELECT DISTINCT record_id FROM "
                    f'"match_{kind}" '
                    "WHERE image_id IN (SELECT image_id FROM cited)",
                    list(planned.sql.cte_params),
                )
                used.extend(found.column(0).to_pylist())
    finally:
        for name in tables:
            connection.unregister(name)
    table = _with_vectors(table, planned.vectors)
    if count:
        total = table.column(0)[0].as_py() + counted
        if query.limit is not None:
            total = min(total, query.limit)
        table = pa.table({"images": pa.array([total], pa.int64())})
    return QueryResult(
        table,
        sql,
        params,
        len(survivors),
        batches.num_rows,
        snapshot.commit_id,
        whole_batches,
        tuple(sorted(used)),
    )
