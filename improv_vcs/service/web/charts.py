"""Charts drawn as inline SVG on the server: the timeline's bars (one row
per instrument, each bar a link) and the map's sample positions on plain
longitude/latitude axes. Nothing is fetched from elsewhere."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from html import escape
from typing import Any

from markupsafe import Markup

WIDTH = 1000
ROW = 110
LEFT = 70
BOTTOM = 28


def timeline_svg(
    rows: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    link: Callable[[dict[str, Any]], str],
    value: str = "images",
) -> Markup:
    """Bars of ``value`` per instrument over ``[start, end)``; each bar links
    to ``link(row)`` and is reachable by keyboard."""
    instruments = sorted({r["instrument"] for r in rows})
    height = ROW * max(1, len(instruments)) + BOTTOM
    span = max((end - start).total_seconds(), 1.0)
    plot = WIDTH - LEFT - 10

    def x(t: datetime) -> float:
        return LEFT + plot * (t - start).total_seconds() / span

    parts = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(value)} over time per instrument">'
    ]
    times = sorted({r["bucket"] for r in rows})
    bar = max(2.0, min(40.0, plot / max(len(times), 1) * 0.8))
    for i, instrument in enumerate(instruments):
        top = i * ROW + 8
        mine = [r for r in rows if r["instrument"] == instrument]
        peak = max((r[value] or 0 for r in mine), default=0) or 1
        parts.append(
            f'<text class="label" x="4" y="{top + 14}">{escape(instrument)}</text>'
            f'<text class="tick" x="4" y="{top + 30}">max {_short(peak)}</text>'
            f'<line class="axis" x1="{LEFT}" y1="{top + ROW - 14}" x2="{WIDTH - 10}" '
            f'y2="{top + ROW - 14}"/>'
        )
        for r in mine:
            amount = r[value] or 0
            h = max(1.0, (ROW - 24) * amount / peak)
            left = min(max(LEFT, x(r["bucket"]) - bar / 2), WIDTH - 10 - bar)
            title = f"{instrument} {r['bucket']:%Y-%m-%d %H:%M} UTC: {_short(amount)} {value}"
            parts.append(
                f'<a href="{escape(link(r))}" class="bar-link">'
                f'<rect class="bar" x="{left:.1f}" y="{top + ROW - 14 - h:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}"><title>{escape(title)}</title></rect></a>'
            )
    label = "%Y-%m-%d" if end - start > timedelta(days=3) else "%m-%d %H:%M"
    ticks = _ticks(start, end)
    for k, t in enumerate(ticks):
        anchor = "start" if k == 0 else "end" if k == len(ticks) - 1 else "middle"
        parts.append(
            f'<text class="tick" x="{x(t):.1f}" y="{height - 8}" text-anchor="{anchor}">'
            f"{t.strftime(label)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def map_svg(points: list[dict[str, Any]], link: Callable[[dict[str, Any]], str]) -> Markup:
    """Sample positions (``lat``, ``lon``, ``label``) on longitude/latitude
    axes fitted to them; the page's script turns a drag into a box query."""
    if not points:
        return Markup('<p class="empty">No image in this snapshot has a position.</p>')
    lats = [p["lat"] for p in points]
    lons = [p["lon"] for p in points]
    lat0, lat1 = _padded(min(lats), max(lats))
    lon0, lon1 = _padded(min(lons), max(lons))
    w, h = 800, 560

    def sx(lon: float) -> float:
        return 50 + (w - 70) * (lon - lon0) / (lon1 - lon0)

    def sy(lat: float) -> float:
        return 20 + (h - 60) * (lat1 - lat) / (lat1 - lat0)

    parts = [
        f'<svg id="map" class="map" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="sample positions" data-lat0="{lat0}" data-lat1="{lat1}" '
        f'data-lon0="{lon0}" data-lon1="{lon1}" data-left="50" data-top="20" '
        f'data-width="{w - 70}" data-height="{h - 60}">',
        f'<rect class="frame" x="50" y="20" width="{w - 70}" height="{h - 60}"/>',
    ]
    for k in range(5):
        lon = lon0 + (lon1 - lon0) * k / 4
        lat = lat0 + (lat1 - lat0) * k / 4
        anchor = "end" if k == 4 else "middle"
        parts.append(
            f'<text class="tick" x="{sx(lon):.1f}" y="{h - 22}" text-anchor="{anchor}">'
            f"{lon:.3f}°</text>"
            f'<text class="tick" x="46" y="{sy(lat) + 4:.1f}" text-anchor="end">{lat:.3f}°</text>'
        )
    for p in points:
        parts.append(
            f'<a href="{escape(link(p))}"><circle class="point" cx="{sx(p["lon"]):.1f}" '
            f'cy="{sy(p["lat"]):.1f}" r="5"><title>{escape(p["label"])}</title></circle></a>'
        )
    parts.append('<rect id="selection" class="selection" x="0" y="0" width="0" height="0"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _padded(low: float, high: float) -> tuple[float, float]:
    pad = max((high - low) * 0.1, 0.01)
    return round(low - pad, 4), round(high + pad, 4)


def _short(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}"
    return f"{int(value):,}"


def _ticks(start: datetime, end: datetime, count: int = 6) -> list[datetime]:
    step = (end - start) / count
    return [start + step * k for k in range(count + 1)]
