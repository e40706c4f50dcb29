"""A self-contained HTML map of work zones: an inline SVG drawn from the coordinates alone (Web
Mercator, fitted to the data), so it opens offline; base-map tiles are drawn under it only when a
tile URL template (`https://.../{z}/{x}/{y}.png`) is configured. Every text is HTML-escaped."""

from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT, PAD = 900, 560, 30  # SVG size and margin, pixels
TILE = 256


def _merc(lat: float, lon: float) -> tuple[float, float]:
    """Web Mercator in world pixels at zoom 0 (0..256)."""
    lat = max(min(lat, 85.05), -85.05)
    x = (lon + 180.0) / 360.0 * TILE
    y = (1 - math.log(math.tan(math.radians(lat)) + 1 / math.cos(math.radians(lat))) / math.pi) / 2 * TILE
    return x, y


def map_html(geojson: dict, tile_url: str | None = None) -> str:
    feats = geojson["features"]
    pts = [c for f in feats for c in _points(f["geometry"])]
    xs, ys = zip(*[_merc(lat, lon) for lon, lat in pts])
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-9)
    zoom = min(19, max(0, int(math.log2(min(WIDTH, HEIGHT) - 2 * PAD) - math.log2(span))))  # tile zoom fitting the data
    scale = min((WIDTH - 2 * PAD) / max(max(xs) - min(xs), 1e-9), (HEIGHT - 2 * PAD) / max(max(ys) - min(ys), 1e-9),
                2.0 ** 22)
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2

    def px(lon: float, lat: float) -> tuple[float, float]:
        x, y = _merc(lat, lon)
        return WIDTH / 2 + (x - cx) * scale, HEIGHT / 2 + (y - cy) * scale

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#eef1f4"/>']
    if tile_url:
        svg += _tiles(tile_url, zoom, scale, cx, cy)
    order = {"track": 0, "photo": 1, "zone": 2}
    zones = []
    for f in sorted(feats, key=lambda f: order.get(f["properties"].get("kind"), 3)):
        kind, g, props = f["properties"].get("kind"), f["geometry"], f["properties"]
        tip = escape(_tip(props))
        if kind == "zone":
            zones.append(props)
            label = f'<text class="n" x="{{x:.1f}}" y="{{y:.1f}}">{len(zones)}</text>'
        if g["type"] == "LineString":
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y in (px(*c) for c in g["coordinates"]))
            style = 'stroke="#e8590c" stroke-width="7"' if kind == "zone" else 'stroke="#868e96" stroke-width="3"'
            svg.append(f'<polyline points="{d}" fill="none" {style} stroke-linecap="round"><title>{tip}</title></polyline>')
            anchor = px(*g["coordinates"][0])
        else:
            x, y = anchor = px(*g["coordinates"])
            fill, r = ("#e8590c", 8) if kind == "zone" else ("#868e96", 4)
            svg.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{fill}" stroke="#fff"><title>{tip}</title></circle>')
        if kind == "zone":
            svg.append(label.format(x=anchor[0] + 9, y=anchor[1] - 9))
    svg += [_scale_bar(scale, cy), "</svg>"]
    rows = "".join(
        f"<tr><td>{i}</td><td>{escape(str(p.get('source', '')))}</td><td>{escape(_when(p))}</td>"
        f"<td>{_num(p.get('peak_prob'))}</td><td>{_num(p.get('mean_prob'))}</td><td>{len(p.get('frames', []))}</td></tr>"
        for i, p in enumerate(zones, 1))
    credit = f"<p>Base map: {escape(tile_url)}</p>" if tile_url else "<p>No base map (drawn from the GPS coordinates alone).</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>roadwork: work zones</title>
<style>body{{font:14px system-ui,sans-serif;margin:16px;color:#1d232b}} svg{{border:1px solid #ccd;max-width:100%;height:auto}}
table{{border-collapse:collapse;margin-top:12px}} td,th{{border-bottom:1px solid #dde;padding:3px 10px;text-align:left}}
.n{{font:bold 14px system-ui;fill:#1d232b;paint-order:stroke;stroke:#fff;stroke-width:3px}}
.k span{{display:inline-block;width:22px;height:6px;margin:0 6px 2px 12px;vertical-align:middle}}</style></head>
<body><h1>Work zones: {len(zones)}</h1>
<p class="k"><span style="background:#e8590c"></span>work zone<span style="background:#868e96"></span>GPS track / photo without roadwork</p>
{"".join(svg)}
<table><thead><tr><th>#</th><th>source</th><th>when</th><th>peak prob</th><th>mean prob</th><th>frames</th></tr></thead>
<tbody>{rows}</tbody></table>{credit}</body></html>
"""


def _points(g: dict) -> list:
    return g["coordinates"] if g["type"] == "LineString" else [g["coordinates"]]


def _when(p: dict) -> str:
    if "start_s" in p:
        clock = f"{p['start_s']:.1f}-{p['end_s']:.1f} s"
        return f"{clock} ({p['start_time']} to {p['end_time']})" if p.get("start_time") else clock
    return p.get("start_time") or ""


def _tip(p: dict) -> str:
    return f"{p.get('kind')}: {p.get('source', '')} {_when(p)} peak {_num(p.get('peak_prob'))}"


def _num(v) -> str:
    return "" if v is None else f"{v:.3f}"


def _tiles(url: str, zoom: int, scale: float, cx: float, cy: float) -> list[str]:
    n, size = 2 ** zoom, TILE / 2 ** zoom * scale  # tiles per side; one tile's size on screen
    x0, y0 = (cx - WIDTH / 2 / scale) * n / TILE, (cy - HEIGHT / 2 / scale) * n / TILE
    out = []
    for tx in range(max(0, int(x0)), min(n, int(x0 + WIDTH / size) + 2)):
        for ty in range(max(0, int(y0)), min(n, int(y0 + HEIGHT / size) + 2)):
            href = escape(url.replace("{z}", str(zoom)).replace("{x}", str(tx)).replace("{y}", str(ty)))
            out.append(f'<image href="{href}" x="{(tx - x0) * size:.1f}" y="{(ty - y0) * size:.1f}" '
                       f'width="{size:.1f}" height="{size:.1f}"/>')
    return out


def _scale_bar(scale: float, cy: float) -> str:
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * cy / TILE))))
    m_per_px = 40075016.686 * math.cos(math.radians(lat)) / TILE / scale
    target = m_per_px * 120
    nice = 10 ** math.floor(math.log10(target))
    nice = max(v * nice for v in (1, 2, 5) if v * nice <= target)
    w = nice / m_per_px
    text = f"{nice / 1000:g} km" if nice >= 1000 else f"{nice:g} m"
    y = HEIGHT - 14
    return (f'<line x1="14" y1="{y}" x2="{14 + w:.1f}" y2="{y}" stroke="#1d232b" stroke-width="3"/>'
            f'<text x="14" y="{y - 6}" font-size="12">{text}</text>')
