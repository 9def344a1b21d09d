"""Rebuild N-D arrays from the planes of a stack.

Planes carry ``p, t, c, z`` indices (see :mod:`improv_vcs.ingest.adapters.tiff`).
The full array of a sample is ``(P, T, C, Z, Y, X[, S])``; selectors index it
the way numpy does: an ``int`` picks one position and drops the axis, a
``slice`` or a list of ints keeps it. Only the planes selected are read.

Series (``p``) are picked first, and ``t, c, z`` index each picked series.
Series of one file may differ in shape (multi-scene files): each reads on its
own (``p=1`` gives that series' ``(T, C, Z, Y, X[, S])``), and a read that
would put series of different shapes in one array is refused.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import InvalidInputError

AXES = ("p", "t", "c", "z")
Selector = int | slice | Sequence[int] | None


def parse_selector(text: str, axis: str) -> Selector:
    """``N``, ``A:B`` (end exclusive, either side may be empty) or ``A,B,C``."""
    try:
        if ":" in text:
            start, _, stop = text.partition(":")
            return slice(int(start) if start.strip() else None, int(stop) if stop.strip() else None)
        if "," in text:
            return [int(v) for v in text.split(",")]
        return int(text)
    except ValueError:
        raise InvalidInputError(
            f"--{axis} needs N, A:B or A,B,C (integers), got {text!r}"
        ) from None


def require_planes(rows: pa.Table) -> None:
    missing = [a for a in AXES if a not in rows.column_names]
    if missing:
        raise InvalidInputError(
            "these images have no plane indices (p, t, c, z); stacks ingested with "
            "`improv commit --format tiff` (split=planes) have them"
        )


def select(
    rows: pa.Table, selectors: Mapping[str, Selector]
) -> tuple[pa.Table, dict[str, list[int] | int]]:
    """The rows of one sample's planes that ``selectors`` pick, and per axis the
    index values kept (a list) or picked (an int). The series picked must share
    one shape."""
    series = _series(rows)
    p = _pick(sorted(series), selectors.get("p"), "p", "the stack")
    picked = {i: series[i] for i in ([p] if isinstance(p, int) else p)}
    if not picked:
        raise InvalidInputError("no planes selected")
    _require_one_shape(picked)
    owner = "the stack" if len(series) == 1 else f"series {', '.join(map(str, picked))}"
    table, chosen = _select_planes(pa.concat_tables(picked.values()), selectors, owner)
    return table, {"p": p, **chosen}


def select_each_sample(rows: pa.Table, selectors: Mapping[str, Selector]) -> pa.Table:
    """The planes ``selectors`` pick in every series of every sample of ``rows``,
    each series indexed on its own."""
    require_planes(rows)
    if not any(selectors.get(a) is not None for a in AXES):
        return rows
    parts = []
    for sample in rows.column("sample_id").unique().to_pylist():
        series = _series(rows.filter(pc.equal(rows.column("sample_id"), sample)))
        p = _pick(sorted(series), selectors.get("p"), "p", f"sample {sample!r}")
        for i in dict.fromkeys([p] if isinstance(p, int) else p):
            parts.append(_select_planes(series[i], selectors, f"series {i} of {sample!r}")[0])
    return pa.concat_tables(parts) if parts else rows


def _series(rows: pa.Table) -> dict[int, pa.Table]:
    """The planes of each series (``p``) of one sample."""
    require_planes(rows)
    for axis in AXES:
        if rows.column(axis).null_count:
            raise InvalidInputError(f"some planes have no {axis} index")
    column = rows.column("p")
    return {int(p): rows.filter(pc.equal(column, p)) for p in sorted(column.unique().to_pylist())}


def _select_planes(
    rows: pa.Table, selectors: Mapping[str, Selector], owner: str
) -> tuple[pa.Table, dict[str, list[int] | int]]:
    """The rows ``selectors`` pick on the ``t, c, z`` axes of ``rows`` (``owner``'s planes)."""
    chosen: dict[str, list[int] | int] = {}
    mask = pa.array([True] * rows.num_rows)
    for axis in AXES[1:]:
        column = rows.column(axis)
        picked = _pick(sorted(set(column.to_pylist())), selectors.get(axis), axis, owner)
        chosen[axis] = picked
        values = [picked] if isinstance(picked, int) else picked
        mask = pc.and_(mask, pc.is_in(column, value_set=pa.array(values, column.type)))
    return rows.filter(mask), chosen


_PLANE_COLUMNS = {"height": "Y", "width": "X", "samples": "S"}


def _shape(rows: pa.Table) -> str:
    """One series' shape as text, e.g. ``(T=1, C=2, Z=3, Y=64, X=64) uint16``: its ``t, c, z``
    extents, then its plane shape and pixel type as far as the rows record them."""
    parts = [f"{axis.upper()}={_positions(_values(rows, axis))}" for axis in AXES[1:]]
    for column, axis in _PLANE_COLUMNS.items():
        values = _values(rows, column) if column in rows.column_names else []
        if values and (axis != "S" or values != [1]):  # grey planes have no S axis
            parts.append(f"{axis}={'/'.join(map(str, values))}")
    dtype = "/".join(map(str, _values(rows, "dtype"))) if "dtype" in rows.column_names else ""
    return f"({', '.join(parts)}) {dtype}".rstrip()


def _values(rows: pa.Table, column: str) -> list:
    return sorted(set(rows.column(column).to_pylist()), key=lambda v: (v is None, v))


def _positions(values: list[int]) -> str:
    """The count of positions ``0..n-1``, else the positions themselves."""
    if values == list(range(len(values))):
        return str(len(values))
    return "{" + ",".join(map(str, values)) + "}"


def _require_one_shape(series: Mapping[int, pa.Table]) -> None:
    shapes = {p: _shape(rows) for p, rows in series.items()}
    first, *others = shapes
    for p in others:
        if shapes[p] != shapes[first]:
            raise InvalidInputError(
                f"series {first} is {shapes[first]} and series {p} is {shapes[p]}: "
                f"they do not fit one array; read one series at a time (p={first} or p={p})"
            )


def _pick(present: list[int], selector: Selector, axis: str, owner: str) -> list[int] | int:
    if selector is None:
        return present
    if isinstance(selector, (str, bytes)):
        raise InvalidInputError(
            f"{axis} must be an int, a slice or a list of ints, not {selector!r}"
        )
    try:
        if isinstance(selector, (int, np.integer)) and not isinstance(selector, bool):
            return present[int(selector)]
        if isinstance(selector, slice):
            return present[selector]
        return [present[int(i)] for i in selector]
    except IndexError:
        raise InvalidInputError(
            f"{axis}={selector!r} is out of range: {owner} has {len(present)} {axis} position(s)"
        ) from None
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"{axis} must be an int, a slice or a list of ints, not {selector!r}"
        ) from None


def assemble(
    rows: pa.Table, chosen: Mapping[str, list[int] | int], planes: Iterable[tuple[str, bytes]]
) -> np.ndarray:
    """The array of the selected planes: ``planes`` gives ``(image_id, bytes)``
    for every row of ``rows`` (in any order)."""
    kept = [a for a in AXES if not isinstance(chosen[a], int)]
    slots: dict[str, dict[int, list[int]]] = {
        a: {} for a in kept
    }  # index value → positions (repeats allowed)
    for a in kept:
        for i, v in enumerate(chosen[a]):  # type: ignore[arg-type]
            slots[a].setdefault(v, []).append(i)
    where = {
        image: list(itertools.product(*(slots[a][row[a]] for a in kept)))
        for image, row in zip(
            rows.column("image_id").to_pylist(), rows.select(list(AXES)).to_pylist()
        )
    }
    shape = tuple(len(chosen[a]) for a in kept)  # type: ignore[arg-type]
    out: np.ndarray | None = None
    filled = np.zeros(shape, dtype=bool)
    for image, data in planes:
        plane = decode(data)
        if out is None:
            out = np.empty(shape + plane.shape, dtype=plane.dtype)
        elif plane.shape != out.shape[len(shape) :] or plane.dtype != out.dtype:
            raise InvalidInputError(
                f"plane {image!r} is {plane.dtype} {plane.shape}, others are {out.dtype} "
                f"{out.shape[len(shape) :]}"
            )
        for slot in where[image]:
            out[slot] = plane
            filled[slot] = True
    if out is None:
        raise InvalidInputError("no planes selected")
    if not filled.all():
        gap = tuple(int(i) for i in np.argwhere(~filled)[0])
        named = {a: chosen[a][i] for a, i in zip(kept, gap)}  # type: ignore[index]
        raise InvalidInputError(
            f"the stack has no plane at {', '.join(f'{a}={v}' for a, v in named.items())}"
        )
    return out


def decode(data: bytes) -> np.ndarray:
    """The pixels of a stored plane (TIFF, or any format Pillow reads)."""
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        import tifffile

        return tifffile.imread(io.BytesIO(data))
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)
