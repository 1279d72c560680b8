"""Line charts as PNG with Pillow only (no plotting dependency): panels of mean lines with a shaded
spread band, a logarithmic or linear x axis, a legend. Enough for benchmark figures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

Color = tuple[int, int, int]
PALETTE: dict[str, Color] = {
    "blue": (31, 119, 180), "orange": (255, 127, 14), "green": (44, 160, 44), "red": (214, 39, 40),
    "purple": (148, 103, 189), "brown": (140, 86, 75), "grey": (110, 110, 110), "olive": (128, 128, 0),
}


@dataclass
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]
    spread: Sequence[float] | None = None  # half-width of the band around y (e.g. a standard deviation)
    color: Color = PALETTE["blue"]
    dashed: bool = False


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    log_x: bool = True
    y_range: tuple[float, float] | None = None


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=mag * 10)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], start
    while t <= hi + 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _dashed_line(draw: ImageDraw.ImageDraw, pts: list[tuple[float, float]], color: Color, width: int,
                 dash: float = 9.0, gap: float = 6.0) -> None:
    on, left = True, dash
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        seg = math.hypot(x1 - x0, y1 - y0)
        pos = 0.0
        while pos < seg:
            step = min(left, seg - pos)
            a = pos / seg
            b = (pos + step) / seg
            if on:
                draw.line([(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a), (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)],
                          fill=color, width=width)
            pos += step
            left -= step
            if left <= 1e-9:
                on = not on
                left = dash if on else gap


def render(panels: list[Panel], path: Path, *, title: str = "", panel_size: tuple[int, int] = (620, 440)) -> None:
    """Panels side by side, a shared legend below them, written to ``path``."""
    pw, ph = panel_size
    labels: dict[str, Series] = {}
    for p in panels:
        for s in p.series:
            labels.setdefault(s.label, s)
    legend_rows = math.ceil(len(labels) / 3)
    top = 40 if title else 10
    width, height = pw * len(panels), top + ph + 20 + 24 * legend_rows + 10
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img, "RGBA")
    small, normal = _font(13), _font(15)
    if title:
        draw.text((width / 2, 12), title, fill="black", font=_font(17), anchor="mt")
    for k, panel in enumerate(panels):
        _draw_panel(draw, panel, (k * pw, top, (k + 1) * pw, top + ph), small, normal)
    y0 = top + ph + 14
    col_w = width / 3
    for i, s in enumerate(labels.values()):
        x = 20 + (i % 3) * col_w
        y = y0 + (i // 3) * 24
        pts = [(float(x), float(y + 8)), (float(x + 36), float(y + 8))]
        if s.dashed:
            _dashed_line(draw, pts, s.color, 3, dash=7, gap=4)
        else:
            draw.line(pts, fill=s.color, width=3)
        draw.text((x + 44, y + 8), s.label, fill="black", font=small, anchor="lm")
    img.save(path, optimize=True)


def _draw_panel(draw: ImageDraw.ImageDraw, panel: Panel, box: tuple[int, int, int, int],
                small: ImageFont.FreeTypeFont | ImageFont.ImageFont,
                normal: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> None:
    x0, y0, x1, y1 = box
    left, right, top, bottom = x0 + 70, x1 - 20, y0 + 30, y1 - 55
    xs = [float(v) for s in panel.series for v in s.x if not panel.log_x or v > 0]
    if not xs:
        return
    fx = (lambda v: math.log10(v)) if panel.log_x else (lambda v: v)
    xlo, xhi = fx(min(xs)), fx(max(xs))
    if xhi - xlo < 1e-9:
        xlo, xhi = xlo - 0.5, xhi + 0.5
    pad = 0.05 * (xhi - xlo)
    xlo, xhi = xlo - pad, xhi + pad
    if panel.y_range is not None:
        ylo, yhi = panel.y_range
    else:
        ys = [float(v) for s in panel.series for v in s.y]
        ys += [float(v) + sgn * float(e) for s in panel.series if s.spread is not None
               for v, e in zip(s.y, s.spread, strict=True) for sgn in (-1, 1)]
        ylo, yhi = min(ys), max(ys)
        margin = 0.08 * (yhi - ylo)
        ylo, yhi = ylo - margin, yhi + margin
    ylo, yhi = (ylo - 0.5, yhi + 0.5) if yhi - ylo < 1e-9 else (ylo, yhi)

    def px(v: float) -> float:
        return left + (fx(v) - xlo) / (xhi - xlo) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - ylo) / (yhi - ylo) * (bottom - top)

    draw.text(((left + right) / 2, y0 + 8), panel.title, fill="black", font=normal, anchor="mt")
    for t in _nice_ticks(ylo, yhi):
        draw.line([(left, py(t)), (right, py(t))], fill=(232, 232, 232), width=1)
        draw.text((left - 6, py(t)), f"{t:g}", fill="black", font=small, anchor="rm")
    if panel.log_x:
        decades = range(math.floor(xlo), math.ceil(xhi) + 1)
        ticks = [m * 10.0**d for d in decades for m in (1, 3) if xlo <= math.log10(m * 10.0**d) <= xhi]
    else:
        ticks = _nice_ticks(xlo, xhi)
    for t in ticks:
        draw.line([(px(t), top), (px(t), bottom)], fill=(232, 232, 232), width=1)
        draw.text((px(t), bottom + 6), f"{t:g}", fill="black", font=small, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline=(80, 80, 80), width=1)
    draw.text(((left + right) / 2, bottom + 26), panel.xlabel, fill="black", font=small, anchor="mt")
    draw.text((x0 + 8, (top + bottom) / 2), panel.ylabel, fill="black", font=small, anchor="lm")
    for s in panel.series:
        pts = [(px(float(a)), py(float(b))) for a, b in zip(s.x, s.y, strict=True) if not panel.log_x or a > 0]
        if s.spread is not None and len(pts) > 1:
            upper = [(px(float(a)), py(float(b) + float(e))) for a, b, e in zip(s.x, s.y, s.spread, strict=True)]
            lower = [(px(float(a)), py(float(b) - float(e))) for a, b, e in zip(s.x, s.y, s.spread, strict=True)]
            draw.polygon(upper + lower[::-1], fill=(*s.color, 40))
        if s.dashed:
            _dashed_line(draw, pts, s.color, 3)
        elif len(pts) > 1:
            draw.line(pts, fill=s.color, width=3, joint="curve")
        for x, y in pts:
            draw.ellipse([x - 3.5, y - 3.5, x + 3.5, y + 3.5], fill=s.color)
