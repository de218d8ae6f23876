"""Small statistics and the Markdown table: pure functions."""

import statistics


def median(values):
    return statistics.median(values) if values else None


def percentile(values, pct):
    """The nearest-rank percentile (p50, p95) of ``values``."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def ratio(ours, theirs):
    if ours is None or theirs in (None, 0):
        return None
    return ours / theirs


def fmt(value, unit=""):
    if value is None:
        return "–"
    if isinstance(value, float):
        text = f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def table(header, rows):
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
