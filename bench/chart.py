"""The chart of RESULTS.svg: plain SVG written by hand, no plotting dependency for one picture."""

from __future__ import annotations

from bench.measure import Pair

RATIO_TARGET = 1.05


def svg_chart(pairs: list[Pair], cap: float = 3.0) -> str:
    """Horizontal bars: each pair's median A/B ratio, whiskers from its lowest to its highest run ratio,
    dashed lines at 1.00 (parity) and 1.05 (the target). Ratios above ``cap`` are drawn cut, labelled."""
    rows = [(p.title, p.median_ratio, min(p.ratios), max(p.ratios)) for p in pairs if p.ratios]
    top = min(max([hi for *_, hi in rows] + [1.2]), cap)
    width, left, bar_h, gap = 760, 150, 26, 16
    plot_w = width - left - 90
    height = 60 + len(rows) * (bar_h + gap) + 30

    def x(val: float) -> float:
        return left + plot_w * min(val, top) / top

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="13">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="24" font-size="15">dbsage-tui time / raw tool time (median; whiskers: '
             'min-max of runs)</text>']
    for val, color, label, side in ((1.0, "#888", "1.00", -1),
                                    (RATIO_TARGET, "#c33", f"target {RATIO_TARGET}", 1)):
        parts.append(f'<line x1="{x(val):.1f}" y1="40" x2="{x(val):.1f}" y2="{height - 30}" '
                     f'stroke="{color}" stroke-dasharray="4 3"/>')
        anchor = "end" if side < 0 else "start"
        parts.append(f'<text x="{x(val) + 3 * side:.1f}" y="{height - 14}" fill="{color}" '
                     f'text-anchor="{anchor}">{label}</text>')
    for i, (title, med, lo, hi) in enumerate(rows):
        y = 50 + i * (bar_h + gap)
        color = "#3a7" if med <= RATIO_TARGET else "#d73"
        mid = y + bar_h / 2
        parts += [f'<text x="{left - 8}" y="{y + bar_h * 0.65:.1f}" text-anchor="end">{title}</text>',
                  f'<rect x="{left}" y="{y}" width="{x(med) - left:.1f}" height="{bar_h}" fill="{color}"/>',
                  f'<line x1="{x(lo):.1f}" y1="{mid}" x2="{x(hi):.1f}" y2="{mid}" stroke="black"/>',
                  f'<text x="{x(max(hi, med)) + 6:.1f}" y="{y + bar_h * 0.65:.1f}">{med:.2f}×'
                  f'{" (cut)" if med > top else ""}</text>']
    parts.append("</svg>")
    return "\n".join(parts)
