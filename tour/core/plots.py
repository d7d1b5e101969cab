"""Pictures without touching pyplot's global state.

Stops draw on a `matplotlib.figure.Figure` object (the object API) instead of `matplotlib.pyplot`, so importing or
running a stop never switches a notebook's backend (`matplotlib.use`) or leaves figures open. The figure is saved
as a PNG in the stop's output folder and its path goes into the Result; `Result._repr_html_` inlines it.
"""

from __future__ import annotations

from pathlib import Path


def figure(width: float = 5, height: float = 3.2, dpi: int = 100):
    """A new, unattached matplotlib Figure (no pyplot, no backend change)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi)


def save(fig, path: Path | str, dpi: int | None = None) -> str:
    """Lay the figure out, write it as a PNG and return the path as a string (what Results hold)."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi or fig.dpi)
    return str(path)
