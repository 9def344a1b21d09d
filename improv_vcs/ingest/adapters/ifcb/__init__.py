"""The ``ifcb`` format: raw Imaging FlowCytobot bins.

A bin is three files sharing its id as stem: ``.hdr`` (instrument settings,
text), ``.adc`` (one CSV row per trigger) and ``.roi`` (the ROIs' uint8
pixels back to back; legacy bins start with one byte of padding). Ids are
``DYYYYMMDDTHHMMSS_IFCBnnn`` or, for legacy bins, ``IFCBn_YYYY_DDD_HHMMSS``;
the legacy ADC layout (schema 1, 15 columns) differs from the current one
(schema 2, 24 columns), and current headers name the columns in
``ADCFileFormat:``.

Every ROI (an ADC row with a non-zero width and height) becomes an image:
a lossless PNG of its pixels, id ``<bin>_<roi number:05d>`` (the 1-based ADC
row), timestamp its own (the bin's start plus the row's ADC time, design
record 014) and ``bin_time`` the bin's start, ``sample_id`` the bin id, with
the ADC row as columns (canonical snake-case names) and selected header
fields as ``bin_*`` columns. The three files are kept byte for byte as
original files, and the bin is registered as a sample (its run window,
volume analyzed, header facts and trigger counts as metadata).

Modules: :mod:`.header` (ids, ``.hdr``), :mod:`.adc` (``.adc`` rows and
their times), :mod:`.volume` (``ml_analyzed``), :mod:`.bins` (finding and
checking bins), :mod:`.pixels` (PNG encoding), :mod:`.adapter` (the plan).
"""

from __future__ import annotations

from .adapter import IfcbAdapter
from .adc import parse_adc, trigger_table
from .bins import Bin, find_bins, load_bin
from .header import BinId, parse_bin_id, parse_header
from .pixels import encode_png, encoded_rois
from .volume import ml_analyzed

__all__ = [
    "Bin",
    "BinId",
    "IfcbAdapter",
    "encode_png",
    "encoded_rois",
    "find_bins",
    "load_bin",
    "ml_analyzed",
    "parse_adc",
    "parse_bin_id",
    "parse_header",
    "trigger_table",
]
