"""Columns of numbers by position, stored as Arrow lists rather than JSON:
class scores (a list of float64, any length) and embeddings (a fixed-size
list of float16 or float32, one length per column). Read from Arrow lists or
JSON array text; identified in record ids by the SHA-256 of their bytes."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core import canonical
from ..core.errors import InvalidInputError

LIST = pa.list_(pa.float64())


def column(
    values: pa.ChunkedArray | pa.Array,
    name: str,
    shape: Literal["list", "fixed"],
    known: str | None,
) -> pa.Array:
    """``values`` as column ``name`` stores them: a ``"list"`` of float64
    (canonical JSON text when ``known``, the type earlier records held, is
    text), or a ``"fixed"``-size list of float16 (kept) or float32."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_null(values.type):
        return values
    lists = _lists(values, name)
    if shape == "fixed":
        return _fixed(lists, name)
    out = lists.cast(LIST)
    _check_finite(out, out.flatten(), name)
    return _text(values) if known == "string" else out


def _lists(values: pa.Array, name: str) -> pa.Array:
    """``values`` as an Arrow list of numbers with no missing element."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = _parsed(values, name)
    kind = values.type
    if not (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ):
        raise InvalidInputError(
            f"column {name!r} must hold numbers by position (a list, or JSON array text), "
            f"not {kind}"
        )
    element = kind.value_type
    if not (
        pa.types.is_floating(element) or pa.types.is_integer(element) or pa.types.is_null(element)
    ):
        raise InvalidInputError(f"column {name!r} must hold lists of numbers, not of {element}")
    flat = values.flatten()
    if flat.null_count and not pa.types.is_null(element):
        row = _record_of(values, pc.is_null(flat))
        raise InvalidInputError(f"column {name!r}: record {row} has a missing number")
    return values


def _parsed(values: pa.Array, name: str) -> pa.Array:
    out = []
    for row, text in enumerate(values.to_pylist(), start=1):
        try:
            value = None if text is None else json.loads(text)
        except json.JSONDecodeError:
            value = ()
        if text is not None and not (
            isinstance(value, list)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise InvalidInputError(
                f"column {name!r}: record {row} must be a JSON array of numbers, not {text!r}"
            )
        out.append(value)
    try:
        return pa.array(out, LIST)
    except (pa.ArrowInvalid, OverflowError) as exc:
        raise InvalidInputError(f"column {name!r}: {exc}") from None


def _text(values: pa.Array) -> pa.Array:
    """Canonical JSON text of each list (as repositories written before lists were stored)."""
    out = [
        None if v is None else canonical.dumps(json.loads(v) if isinstance(v, str) else v)
        for v in values.to_pylist()
    ]
    return pa.array(out, pa.string())


def _fixed(lists: pa.Array, name: str) -> pa.Array:
    lengths = pc.list_value_length(lists)
    bounds = pc.min_max(lengths)
    size = bounds["max"].as_py()
    if size is None:
        return pa.nulls(len(lists), pa.null())
    if size == 0:
        raise InvalidInputError(f"column {name!r} holds empty vectors")
    if bounds["min"].as_py() != size:
        first = pc.index(pc.is_valid(lengths), True).as_py()
        other = pc.index(pc.not_equal(lengths, lengths[first]), True).as_py()
        other = first if other < 0 else other
        raise InvalidInputError(
            f"column {name!r} must hold vectors of one length; record {first + 1} has "
            f"{lengths[first].as_py()} numbers, record {other + 1} has {lengths[other].as_py()}"
        )
    element = pa.float16() if pa.types.is_float16(lists.type.value_type) else pa.float32()
    flat = lists.flatten().cast(element)
    _check_finite(lists, flat, name)
    if not lists.null_count:
        return pa.FixedSizeListArray.from_arrays(flat, size)
    valid = pc.is_valid(lists).to_numpy(zero_copy_only=False)
    matrix = np.zeros((len(lists), size), element.to_pandas_dtype())
    matrix[valid] = flat.to_numpy().reshape(-1, size)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), size, mask=pa.array(~valid))


def _check_finite(lists: pa.Array, flat: pa.Array, name: str) -> None:
    """Refuse NaN and infinities; ``flat`` is ``lists.flatten()`` as stored."""
    finite = pc.is_finite(flat)
    if len(flat) and not pc.all(finite).as_py():
        row = _record_of(lists, pc.invert(finite))
        raise InvalidInputError(f"column {name!r} must be finite; record {row} is not")


def _record_of(lists: pa.Array, flags: pa.Array) -> int:
    """The 1-based record holding the first flagged element of ``lists.flatten()``."""
    at = pc.index(flags, True).as_py()
    return pc.list_parent_indices(lists)[at].as_py() + 1


def digests(values: pa.Array) -> pa.Array:
    """Per list: its element count (uint32, little-endian) and the SHA-256 of
    its elements' little-endian bytes (``-0.0`` as ``0.0``), as ``large_binary``.
    A list equal to the one before it (thresholds repeat per record) is hashed once."""
    numbers = values.flatten().to_numpy(zero_copy_only=False)
    if np.signbit(numbers[numbers == 0]).any():
        numbers = numbers + 0.0  # same width: -0.0 + 0.0 is 0.0
    numbers = numbers.astype(numbers.dtype.newbyteorder("<"), copy=False)
    data = memoryview(numbers).cast("B")
    counts = pc.fill_null(pc.list_value_length(values), 0).to_numpy().astype("<u4")
    ends = np.cumsum(counts, dtype=np.int64) * numbers.itemsize
    starts = ends - counts * numbers.itemsize
    fresh = _changed(numbers, counts)
    sha256 = hashlib.sha256
    spans = zip(starts[fresh].tolist(), ends[fresh].tolist())
    hashed = b"".join([sha256(data[a:b]).digest() for a, b in spans])
    rows = np.frombuffer(hashed, np.uint8).reshape(-1, 32)[np.cumsum(fresh) - 1]
    head = np.frombuffer(counts.tobytes(), np.uint8).reshape(len(values), 4)
    packed = np.ascontiguousarray(np.concatenate([head, rows], axis=1))
    fixed = pa.Array.from_buffers(pa.binary(36), len(values), [None, pa.py_buffer(packed)])
    return fixed.cast(pa.large_binary())


def _changed(numbers: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per list, whether it differs from the list before it (every one, unless
    all lists have the same length)."""
    differs = np.ones(len(counts), bool)
    if len(counts) and counts[0] and np.all(counts == counts[0]):
        rows = numbers.reshape(len(counts), int(counts[0]))
        differs[1:] = np.any(rows[1:] != rows[:-1], axis=1)
    return differs
