"""Deterministic synthetic IFCB-like imaging data for tests and benchmarks.

An Imaging FlowCytobot writes a *bin* every ~20 minutes: a few thousand small
8-bit grayscale ROIs, PNG-compressed to 2-10 KB each.  :func:`generate_tree`
lays such bins out on disk as ``root/<instrument>/<bin_id>/<bin_id>_<roi>.png``
with realistic compressibility: smooth dark particles on a light, slightly
uneven background plus sensor noise.  Output is a pure function of the
arguments (the same bytes on every run), because every bin draws from its own
generator seeded with ``(seed, bin index)``.

Only numpy, Pillow and the standard library are used.
"""

from __future__ import annotations

import io
import math
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import NormalDist

import numpy as np
from PIL import Image

__all__ = ["bin_id", "encode_png", "generate_tree", "roi_pixels", "write_raw_bin"]

MAX_PARTICLES = 4

# Standard-normal quantiles of the 256 byte values: indexing this table with
# uniform random bytes gives Gaussian noise far faster than a normal sampler.
_NORMAL_BY_BYTE = np.array(
    [NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], dtype=np.float32
)


def roi_pixels(rng: np.random.Generator) -> np.ndarray:
    """One ROI: a ``(height, width)`` uint8 image, 40-300 px wide, 30-150 px tall.

    A chain of 1-4 soft-edged dark ellipses (a cell or colony) lies on a light
    background (200-230) with a faint gradient, plus Gaussian sensor noise
    (sigma 3-6 grey levels).  As PNG, ROIs are mostly 2-10 KB, about 7.4 KB on
    average.
    """
    width = int(np.clip(rng.lognormal(math.log(138), 0.22), 40, 300))
    height = int(np.clip(rng.lognormal(math.log(86), 0.2), 30, 150))
    u = rng.random(6 + 5 * MAX_PARTICLES, dtype=np.float32)
    bg, grad_x, grad_y, noise, count, chain = u[:6]
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)
    img = (200 + 30 * bg + 8 * (grad_y - 0.5) * y / height)[:, None] + (
        8 * (grad_x - 0.5) * x / width
    )[None, :]

    # Particles sit along a line through the centre, like cells of a chain.
    n = 1 + int(count * MAX_PARTICLES)
    radius = min(width, height) * 0.4 / math.sqrt(n)
    step_x, step_y = math.cos(math.pi * chain) * radius, math.sin(math.pi * chain) * radius
    for i, (size, aspect, theta, dark, jitter) in enumerate(u[6:].reshape(-1, 5)[:n]):
        offset = 1.6 * (i - (n - 1) / 2) + jitter - 0.5
        dx = x - (width / 2 + offset * step_x)
        dy = y - (height / 2 + offset * step_y)
        minor = radius * (0.4 + 0.6 * size)
        a, b = 1 / minor**2, 1 / (minor * (1 + 1.5 * aspect)) ** 2
        cos_t, sin_t = math.cos(math.pi * theta), math.sin(math.pi * theta)
        # q = 1 on the rotated ellipse's rim, assembled from 1-D pieces.
        q = ((a * cos_t**2 + b * sin_t**2) * dx * dx)[None, :] + (
            (a * sin_t**2 + b * cos_t**2) * dy * dy
        )[:, None]
        q += (2 * (a - b) * sin_t * cos_t * dy)[:, None] * dx[None, :]
        img -= (40 + 100 * dark) * np.exp(-q * q)

    raw = np.frombuffer(rng.bytes(width * height), dtype=np.uint8).reshape(height, width)
    img += _NORMAL_BY_BYTE[raw] * (3 + 3 * noise)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG of a 2-D uint8 array (Pillow's default compression)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def bin_id(instrument: str, when: datetime) -> str:
    """IFCB bin id ``DYYYYMMDDTHHMMSS_<instrument>`` (aware times are taken in UTC)."""
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    return f"D{when:%Y%m%dT%H%M%S}_{instrument}"


def _write_bin(root: str, instrument: str, name: str, seed: int, index: int, count: int) -> int:
    """Write ``count`` ROIs of one bin, drawn from a generator seeded by ``(seed, index)``."""
    rng = np.random.default_rng([seed, index])
    directory = os.path.join(root, instrument, name)
    os.makedirs(directory, exist_ok=True)
    for roi in range(1, count + 1):
        with open(os.path.join(directory, f"{name}_{roi:05d}.png"), "wb") as f:
            f.write(encode_png(roi_pixels(rng)))
    return count


ADC_FORMAT = (
    "trigger#, ADCtime, PMTA, PMTB, PMTC, PMTD, PeakA, PeakB, PeakC, PeakD, TimeOfFlight, "
    "GrabTimeStart, "
    "GrabTimeEnd, RoiX, RoiY, RoiWidth, RoiHeight, StartByte, ComparatorOut, StartPoint, "
    "SignalLength, Status, "
    "RunTime, InhibitTime"
)


def write_raw_bin(
    directory: str | os.PathLike[str], name: str, rng: np.random.Generator, count: int
) -> None:
    """Write a bin of ``count`` ROIs as the instrument does: ``<name>.hdr``
    (``key: value`` lines naming the 24 ADC columns), ``<name>.adc`` (one CSV
    row per trigger; about one trigger in three has no image, 0 x 0) and
    ``<name>.roi`` (the ROIs' pixels back to back)."""
    rows, blobs, offset, trigger, clock = [], [], 0, 0, 0.0
    for _ in range(count):
        while rng.random() < 0.33:  # a trigger without an image
            trigger += 1
            clock += float(rng.exponential(0.5))
            rows.append(_adc_row(trigger, clock, 0, 0, 0, 0, offset))
        pixels = roi_pixels(rng)
        trigger += 1
        clock += float(rng.exponential(0.5))
        height, width = pixels.shape
        rows.append(
            _adc_row(
                trigger,
                clock,
                int(rng.integers(0, 1300)),
                int(rng.integers(0, 1000)),
                width,
                height,
                offset,
            )
        )
        blobs.append(pixels.tobytes())
        offset += width * height
    base = os.path.join(os.fspath(directory), name)
    with open(base + ".hdr", "w", newline="\r\n") as f:
        f.write(
            f"softwareVersion: Imaging FlowCytobot Acquisition Software version 2.0.0.0\n"
            f"triggerCount: {trigger}\nroiCount: {count}\nhumidity: 41.5\ntemperature: 19.25\n"
            f"runTime: {clock + 1.0:.4f}\ninhibitTime: {clock / 20:.4f}\nADCFileFormat: "
            f"{ADC_FORMAT}\n"
        )
    with open(base + ".adc", "w", newline="\r\n") as f:
        f.write("".join(line + "\n" for line in rows))
    with open(base + ".roi", "wb") as f:
        f.write(b"".join(blobs))


def _adc_row(
    trigger: int, clock: float, x: int, y: int, width: int, height: int, start: int
) -> str:
    values = [
        trigger,
        f"{clock:.6f}",
        "0.63",
        "0.025",
        "-0.0017",
        "0.0011",
        "3.43",
        "0.26",
        "0.0103",
        "0.0097",
        "54.35",
        f"{clock:.6f}",
        f"{clock + 0.04:.6f}",
        x,
        y,
        width,
        height,
        start if width else 0,
        0,
        0,
        0,
        0,
        f"{clock:.6f}",
        f"{clock / 20:.6f}",
    ]
    return ",".join(str(v) for v in values)


def _write_raw(root: str, instrument: str, name: str, seed: int, index: int, count: int) -> int:
    """Write one raw bin under ``root/D<year>/D<yyyymmdd>/``, seeded by ``(seed, index)``."""
    directory = os.path.join(root, name[:5], name[:9])
    os.makedirs(directory, exist_ok=True)
    write_raw_bin(directory, name, np.random.default_rng([seed, index]), count)
    return count


def generate_tree(
    root: str | os.PathLike[str],
    images: int,
    instruments: tuple[str, ...] = ("IFCB107", "IFCB110"),
    start: datetime = datetime(2024, 5, 1, tzinfo=timezone.utc),
    days: int = 2,
    per_bin: int = 500,
    seed: int = 0,
    workers: int = 2,
    raw: bool = False,
) -> int:
    """Write exactly ``images`` PNG ROIs under ``root`` and return how many were written.

    Bins of ``per_bin`` ROIs alternate between ``instruments``; each
    instrument's bins are spaced evenly over ``days`` days from ``start``.
    Bins are written by a pool of ``workers`` processes (1: in this process).
    With ``raw``, bins are written in the instrument's own format
    (:func:`write_raw_bin`) in a dated tree ``root/D2024/D20240501/``.
    """
    if images < 0 or per_bin < 1 or days < 1 or not instruments or workers < 1:
        raise ValueError("need images >= 0, per_bin >= 1, days >= 1, instruments, workers >= 1")
    bins = -(-images // per_bin)
    per_instrument = -(-bins // len(instruments))
    spacing = days * 86400 // max(per_instrument, 1)
    if spacing < 1:
        raise ValueError(f"{per_instrument} bins per instrument do not fit in {days} days")
    jobs = []
    for index in range(bins):
        instrument = instruments[index % len(instruments)]
        name = bin_id(instrument, start + timedelta(seconds=spacing * (index // len(instruments))))
        count = min(per_bin, images - index * per_bin)
        jobs.append((os.fspath(Path(root)), instrument, name, seed, index, count))
    write = _write_raw if raw else _write_bin
    if workers == 1 or bins <= 1:
        return sum(write(*job) for job in jobs)
    with ProcessPoolExecutor(max_workers=min(workers, bins)) as pool:
        return sum(pool.map(write, *zip(*jobs)))
