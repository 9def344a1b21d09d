// improv web: keyboard navigation on mosaics and box selection on the map.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const mosaic = document.getElementById("mosaic");
  if (mosaic) {
    mosaic.addEventListener("keydown", (event) => {
      const links = Array.from(mosaic.querySelectorAll("a"));
      const at = links.indexOf(document.activeElement);
      if (at < 0) return;
      const perRow = Math.max(1, Math.round(mosaic.clientWidth / links[0].offsetWidth));
      const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: perRow, ArrowUp: -perRow }[event.key];
      if (step === undefined) return;
      const next = links[Math.min(links.length - 1, Math.max(0, at + step))];
      next.focus();
      event.preventDefault();
    });
  }

  const map = document.getElementById("map");
  const field = document.getElementById("bbox");
  if (map && field) {
    const box = document.getElementById("selection");
    const d = map.dataset;
    const toSvg = (event) => {
      const point = map.createSVGPoint();
      point.x = event.clientX;
      point.y = event.clientY;
      return point.matrixTransform(map.getScreenCTM().inverse());
    };
    const toGeo = (p) => {
      const fx = Math.min(1, Math.max(0, (p.x - d.left) / d.width));
      const fy = Math.min(1, Math.max(0, (p.y - d.top) / d.height));
      return {
        lon: Number(d.lon0) + fx * (d.lon1 - d.lon0),
        lat: Number(d.lat1) - fy * (d.lat1 - d.lat0),
      };
    };
    let start = null;
    map.addEventListener("mousedown", (event) => {
      if (event.target.closest("a")) return;
      start = toSvg(event);
      event.preventDefault();
    });
    map.addEventListener("mousemove", (event) => {
      if (!start) return;
      const p = toSvg(event);
      box.setAttribute("x", Math.min(start.x, p.x));
      box.setAttribute("y", Math.min(start.y, p.y));
      box.setAttribute("width", Math.abs(p.x - start.x));
      box.setAttribute("height", Math.abs(p.y - start.y));
    });
    window.addEventListener("mouseup", (event) => {
      if (!start) return;
      const a = toGeo(start);
      const b = toGeo(toSvg(event));
      start = null;
      const round = (v) => v.toFixed(4);
      field.value = [Math.min(a.lat, b.lat), Math.min(a.lon, b.lon), Math.max(a.lat, b.lat), Math.max(a.lon, b.lon)]
        .map(round).join(",");
    });
  }
});
