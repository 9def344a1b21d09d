"""From a selection to a training set or a publication: loaders that feed
PyTorch (without importing it) and exports (``imagefolder``,
``parquet-images``, ``ecotaxa``, ``dwca``, ``datapackage``), each tied to a
citation by its ``MANIFEST.json`` and verifiable with or without the
repository."""

from .export import FORMATS, Exported, ExportOptions, export
from .loader import ImageDataset, ImageStream, decode_array
from .manifest import Verified, verify
from .selection import Labels, Selection, select

__all__ = [
    "FORMATS",
    "ExportOptions",
    "Exported",
    "ImageDataset",
    "ImageStream",
    "Labels",
    "Selection",
    "Verified",
    "decode_array",
    "export",
    "select",
    "verify",
]
