"""The formats ``improv provenance add`` reads, telling a file's format from
its name and content (and the kind asked for), and reading several files
as one submission."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ...core.errors import InvalidInputError
from . import (
    class_tables,
    class_v1,
    class_v3,
    classlist,
    embeddings,
    masks,
    matlab,
    record_tables,
)
from .submission import ReadOptions, Submission, with_constants


@dataclass(frozen=True)
class Format:
    name: str
    kind: str | None
    """The kind of its records (None: any)."""
    read: Callable[[Path, ReadOptions], Submission]
    about: str
    models: bool = False
    """Whether it takes ``--model``/``--model-version`` itself (else they are columns)."""


FORMATS = {
    f.name: f
    for f in (
        Format("records", None, record_tables.read, "CSV or Parquet records"),
        Format(
            "class-v1", "classification", class_v1.read, "an ifcb-analysis class file (v1)", True
        ),
        Format("class-v3", "classification", class_v3.read, "an HDF5 class file (v3)", True),
        Format("class-v4", "classification", class_tables.read, "a class score CSV (v4)", True),
        Format(
            "class-parquet",
            "classification",
            class_tables.read,
            "a per-class score Parquet file",
            True,
        ),
        Format("classlist", "annotation", classlist.read, "a manual annotation file"),
        Format("embeddings", "embedding", embeddings.read, "an embeddings Parquet file", True),
        Format("mask-zip", "segmentation", masks.read, "a zip of masks"),
    )
}


def detect(path: Path, kind: str) -> Format:
    """The format of ``path``, from its extension, its content and ``kind``."""
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5", ".hdf"):
        return FORMATS["class-v3"]
    if suffix == ".zip":
        return FORMATS["mask-zip"]
    if suffix == ".mat":
        names = matlab.variables(path)
        if "classlist" in names:
            return FORMATS["classlist"]
        if "TBscores" in names:
            return FORMATS["class-v1"]
        raise InvalidInputError(
            f"{path.name}: neither a class file (TBscores) nor a manual annotation (classlist)"
        )
    if suffix in (".parquet", ".pq") and kind == "embedding":
        return FORMATS["embeddings"]
    if suffix in (".csv", ".parquet", ".pq"):
        if kind == "classification" and class_tables.is_class_table(path):
            return FORMATS["class-v4" if suffix == ".csv" else "class-parquet"]
        return FORMATS["records"]
    raise InvalidInputError(
        f"{path.name}: cannot tell its format from its name; give --format ({', '.join(FORMATS)})"
    )


def read_files(
    paths: Sequence[Path],
    kind: str,
    format_name: str | None,
    options: ReadOptions,
    constants: Mapping[str, str],
) -> Submission:
    """The ``kind`` records of every file of ``paths`` (of a directory: every
    file under it) as one submission, ``constants`` added as columns."""
    if format_name is not None and format_name not in FORMATS:
        raise InvalidInputError(f"--format must be one of {', '.join(FORMATS)}")
    parts = []
    for path in _files(paths):
        found = FORMATS[format_name] if format_name else detect(path, kind)
        if found.kind not in (None, kind):
            raise InvalidInputError(
                f"{path.name} is {found.about}: it holds {found.kind} records, not {kind}"
            )
        if options.class_list is not None and found.name != "classlist":
            raise InvalidInputError(
                f"--class-list is for manual annotation files; {path.name} is {found.about}"
            )
        part = found.read(path, options)
        table = with_constants(part.table, _columns(found, options, constants), path)
        parts.append(Submission(table, part.masks, part.taxonomies))
    return _merged(parts)


def _files(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(s.startswith(".") for s in p.relative_to(path).parts)
            )
            if not inside:
                raise InvalidInputError(f"{path}: no files in it")
            out.extend(inside)
        elif path.is_file():
            out.append(path)
        else:
            raise InvalidInputError(f"{path}: no such file")
    return out


def _columns(found: Format, options: ReadOptions, constants: Mapping[str, str]) -> dict[str, str]:
    """The constant columns of a file: ``--set``, and ``--model``/``--model-version``
    for formats that do not take them themselves."""
    out = dict(constants)
    if found.models:
        return out
    for name, value in (("model", options.model), ("model_version", options.model_version)):
        if value is not None:
            if name in out:
                raise InvalidInputError(f"give {name} once: --{name.replace('_', '-')} or --set")
            out[name] = value
    return out


def _merged(parts: list[Submission]) -> Submission:
    """One submission of several files' records, masks and class lists."""
    try:
        table = pa.concat_tables([p.table for p in parts], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInputError(f"the files' columns disagree: {exc}") from None
    found: dict[str, bytes] | None = None
    taxonomies: dict[tuple[str, str], tuple[str, ...]] = {}
    for part in parts:
        if part.masks is not None:
            found = found or {}
            twice = next((i for i in part.masks if i in found), None)
            if twice is not None:
                raise InvalidInputError(f"two masks for image {twice!r} among the files")
            found.update(part.masks)
        for key, classes in part.taxonomies.items():
            if taxonomies.setdefault(key, classes) != classes:
                raise InvalidInputError(
                    f"the files give {key[0]} {key[1]} two class lists; give each list its "
                    "own --model-version"
                )
    return Submission(table, found, taxonomies)
