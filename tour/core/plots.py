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
    return write_png(fig, path, dpi=dpi or fig.dpi)


def write_png(fig, path: Path | str, **savefig) -> str:
    """`fig.savefig(path, **savefig)` as a PNG, whole or not at all (a full disk is one line: tour.core.files)."""
    from tour.core.files import writing

    with writing(path) as tmp:
        fig.savefig(tmp, format="png", **savefig)
    return str(path)


def data_uri(fig) -> str:
    """The figure as an inline PNG (`data:image/png;base64,...`): a page that shows it needs no file beside it."""
    import base64
    import io

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


PARITY_MARKS = {True: ("✓ same answer", "#137333"), False: ("✗ answers differ", "#c5221f"),
                None: ("– no parity check", "#6b6f76")}


def ratios_chart(ratios: list[tuple[str, float, bool | None]], roofs: list[tuple[str, float, str]]):
    """One picture of a run's side-by-side measurements: `ratios` are (what, baseline time / variant time, parity)
    drawn on a log scale around 1 (right of it the variant is faster), each with its parity mark; `roofs` are
    (what, share of the limit reached, "12 of 40 tokens/s") on 0-100 %. Either list may be empty, not both."""
    rows = [len(ratios), len(roofs)]
    heights = [n * 0.3 + 0.8 for n in rows if n]
    fig = figure(9.6, sum(heights) + 0.3, dpi=110)
    axes = list(fig.subplots(len(heights), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0])
    if ratios:
        _ratio_panel(axes.pop(0), ratios)
    if roofs:
        _roof_panel(axes.pop(0), roofs)
    return fig


def _ratio_panel(ax, ratios) -> None:
    import math

    from matplotlib.ticker import NullLocator

    names, values, parity = zip(*ratios)
    y = range(len(values))
    colours = ["#3b6fd4" if v >= 1 else "#e8590c" for v in values]
    ax.barh(y, [v - 1 for v in values], left=1, color=colours, height=0.62)  # from 1×: faster right, slower left
    ax.set_xscale("log", base=2)
    lo, hi = min(0.5, min(values) / 2.2), max(2.0, max(values) * 2.2)  # room for the numbers at the bars' ends
    ax.set_xlim(lo, hi)
    ax.axvline(1, color="#1b1f24", lw=1)
    # powers of two inside the axis, every other one when there are many, so the labels never overlap
    ticks = [2.0**k for k in range(math.ceil(math.log2(lo)), math.floor(math.log2(hi)) + 1)]
    step = 2 if len(ticks) > 7 else 1
    ticks = [t for t in ticks if round(math.log2(t)) % step == 0]
    ax.set_xticks(ticks, [f"{t:g}×" for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())  # no unlabelled minor ticks between the powers of two
    for i, (v, ok) in enumerate(zip(values, parity)):
        ax.text(v * 1.06 if v >= 1 else v / 1.06, i, f"{v:.2f}×", va="center", fontsize=8.5,
                ha="left" if v >= 1 else "right")
        mark, colour = PARITY_MARKS[ok]
        ax.text(1.01, i, mark, va="center", fontsize=8.5, color=colour, transform=ax.get_yaxis_transform())
    _names(ax, names)
    ax.set_title("Side by side: baseline time / variant time", fontsize=10, loc="left")


def _roof_panel(ax, roofs) -> None:
    names, shares, details = zip(*roofs)
    y = range(len(shares))
    ax.barh(y, [100] * len(shares), color="#ece8f6", height=0.62)  # the roof: all a bar could reach
    ax.barh(y, [100 * s for s in shares], color="#812ce5", height=0.62)
    ax.set_xlim(0, 100)
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0f} %")
    for i, (s, d) in enumerate(zip(shares, details)):
        inside = s > 0.55  # a long bar carries its words inside, a short one after it
        ax.text(100 * min(s, 1) + (-1 if inside else 1), i, f"{s:.0%}: {d}", va="center", fontsize=8.5,
                ha="right" if inside else "left", color="white" if inside else "#1b1f24")
    _names(ax, names)
    ax.set_title("Roofs: the share of this machine's limit reached", fontsize=10, loc="left")


def _names(ax, names) -> None:
    ax.set_yticks(range(len(names)), names, fontsize=8.5)
    ax.invert_yaxis()  # first measured on top, like the page
    ax.tick_params(axis="x", labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
