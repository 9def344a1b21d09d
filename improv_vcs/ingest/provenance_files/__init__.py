"""Provenance records from files, for ``improv provenance add``: one module
per format (:mod:`.formats` lists them and tells them apart), each reading a
file into a :class:`Submission` of records keyed by image id, with the masks
and class lists they carry."""

from .formats import read_files
from .masks import read_masks
from .record_tables import read_records
from .submission import ReadOptions, Submission

__all__ = ["ReadOptions", "Submission", "read_files", "read_masks", "read_records"]
