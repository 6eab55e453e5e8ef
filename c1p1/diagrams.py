"""Draw the course's diagrams into ``diagrams/*.svg``, or check that the committed files are current.

Every figure is drawn here with matplotlib, from code, so a change to a diagram is a reviewed diff and
``make test`` fails when someone edits the code but forgets to redraw. The output is byte-for-byte
deterministic: fixed sizes, no randomness, a fixed SVG hash salt, no date and no creator string.

    python -m c1p1.diagrams            # (re)draw every diagram
    python -m c1p1.diagrams --check    # exit 1 if a committed diagram is stale; writes nothing

Colours: the Okabe-Ito palette, safe for the common forms of colour blindness, with one colour per
kind of component in every diagram (see ``PALETTE``). Text stays text (``svg.fonttype = 'none'``),
so the files are small and the labels can be searched.
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle
from matplotlib.path import Path as MplPath

from c1p1.cli import generated_cli

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "diagrams"

# Okabe-Ito colours, one per kind of component, used by every diagram.
PALETTE = {
    "resid": "#0072B2",  # blue: the residual stream
    "attn": "#E69F00",  # orange: attention
    "mlp": "#009E73",  # bluish green: MLP
    "ln": "#CC79A7",  # reddish purple: LayerNorm
    "embed": "#D55E00",  # vermillion: embedding and unembedding
    "mask": "#999999",  # grey: masked entries
    "qk": "#F0E442",  # yellow: the QK circuit (background only)
    "ov": "#56B4E9",  # sky blue: the OV circuit (background only)
    "plain": "#000000",  # black: tokens, logits, anything neutral
}
LEGEND_NAMES = {
    "resid": "residual stream",
    "embed": "embedding / unembedding",
    "attn": "attention",
    "mlp": "MLP",
    "ln": "LayerNorm",
    "mask": "masked",
}
INK = "#000000"
MUTED = "#444444"

TITLE = 13.0
FONT = 11.5
SMALL_TEXT = 10.5  # smallest text; figures are at most 12.3 in wide, so it is >= 10.6 px when shown 900 px wide
LINE = 1.3  # line spacing, as a multiple of the font size

RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "c1p1-diagrams",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.monospace": ["DejaVu Sans Mono"],
    "path.simplify": False,
    "lines.solid_capstyle": "round",
}


def fill_of(kind: str) -> str:
    """The light fill that goes with a kind's colour; masks are shaded darker so they read as "off"."""
    return "#ffffff" if kind == "plain" else tint(PALETTE[kind], 0.55 if kind == "mask" else 0.25)


def tint(colour: str, amount: float = 0.22) -> str:
    """Mix `amount` of `colour` into white: a solid light fill (no transparency, so no stacking surprises)."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    mixed = [round(255 - amount * (255 - c)) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in mixed)


# ---------------------------------------------------------------------------------------------------------------
# Drawing helpers. Coordinates are inches from the bottom-left corner of the figure.


@dataclass(frozen=True)
class Box:
    x: float  # centre
    y: float
    w: float
    h: float

    @property
    def left(self) -> tuple[float, float]:
        return (self.x - self.w / 2, self.y)

    @property
    def right(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y)

    @property
    def top(self) -> tuple[float, float]:
        return (self.x, self.y + self.h / 2)

    @property
    def bottom(self) -> tuple[float, float]:
        return (self.x, self.y - self.h / 2)


def canvas(width: float, height: float, title: str | None = None):
    """A blank figure whose data coordinates are inches; optional bold title in the top-left corner."""
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    if title:
        text(ax, 0.2, height - 0.28, title, size=TITLE, ha="left", weight="bold")
    return fig, ax


def text(ax, x, y, s, size=FONT, color=INK, ha="center", va="center", mono=False, weight="normal", **kw):
    family = "monospace" if mono else "sans-serif"
    return ax.text(x, y, s, fontsize=size, color=color, ha=ha, va=va, family=family, weight=weight, zorder=5, **kw)


def lines(ax, x, y, rows: Sequence[str], size=FONT, bold_first=False, mono=(), color=INK, ha="center"):
    """Several lines centred as a block on (x, y); `mono` lists the indices of lines in monospace."""
    step = size * LINE / 72
    top = y + step * (len(rows) - 1) / 2
    for i, row in enumerate(rows):
        weight = "bold" if bold_first and i == 0 else "normal"
        row_size = size if i == 0 or not bold_first else max(SMALL_TEXT, size - 1)
        text(ax, x, top - i * step, row, size=row_size, color=color, ha=ha, mono=i in mono, weight=weight)


def box(ax, b: Box, rows: Sequence[str] | str = (), kind="plain", size=FONT, bold_first=False, mono=(),
        fill: str | None = None, dashed=False, lw=1.6, z=3, radius=0.08) -> Box:
    """A rounded box coloured by `kind` (edge in the colour, fill a light tint), with centred lines of text."""
    colour = PALETTE[kind]
    face = fill if fill is not None else fill_of(kind)
    patch = FancyBboxPatch((b.x - b.w / 2, b.y - b.h / 2), b.w, b.h, boxstyle=f"round,pad=0,rounding_size={radius}",
                           facecolor=face, edgecolor=colour, linewidth=lw, linestyle="--" if dashed else "-", zorder=z)
    ax.add_patch(patch)
    if isinstance(rows, str):
        rows = [rows]
    if rows:
        lines(ax, b.x, b.y, rows, size=size, bold_first=bold_first, mono=mono)
    return b


def region(ax, x0, y0, x1, y1, kind, dashed=False, amount=0.18, lw=1.2, z=1):
    """A large background rectangle (a group, a circuit, a repeated block)."""
    colour = PALETTE[kind]
    ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.12",
                                facecolor=tint(colour, amount), edgecolor=colour if lw else "none", linewidth=lw,
                                linestyle="--" if dashed else "-", zorder=z))


def arrow(ax, *points, kind="plain", lw=1.6, head=True, z=4):
    """A polyline through `points` with an arrow head at the last one."""
    path = MplPath(list(points), [MplPath.MOVETO] + [MplPath.LINETO] * (len(points) - 1))
    style = "-|>" if head else "-"
    ax.add_patch(FancyArrowPatch(path=path, arrowstyle=style, mutation_scale=10 + 2.5 * lw, color=PALETTE[kind],
                                 linewidth=lw, joinstyle="miter", capstyle="butt", zorder=z))


def stream(ax, x0, x1, y, head=True, z=2):
    """The residual stream: a thick blue line (with an arrow head) along which blocks read and add."""
    arrow(ax, (x0, y), (x1, y), kind="resid", lw=5, head=head, z=z)


def node(ax, x, y, symbol="+", kind="resid", r=0.14, size=FONT + 1):
    """A small circle with a symbol in it: an addition onto the stream, a sum, a product."""
    ax.add_patch(Circle((x, y), r, facecolor="#ffffff", edgecolor=PALETTE[kind], linewidth=1.8, zorder=6))
    text(ax, x, y, symbol, size=size, color=PALETTE[kind], weight="bold").set_zorder(7)


def dot(ax, x, y, kind="plain", r=0.055):
    ax.add_patch(Circle((x, y), r, facecolor=PALETTE[kind], edgecolor="#ffffff", linewidth=0.8, zorder=8))


def legend(ax, x, y, kinds: Sequence[str], gap=0.35):
    """One row of colour swatches with their meaning, starting at (x, y)."""
    for kind in kinds:
        box(ax, Box(x + 0.14, y, 0.28, 0.2), kind=kind, lw=1.4, radius=0.04)
        label = LEGEND_NAMES[kind]
        text(ax, x + 0.36, y, label, size=SMALL_TEXT, ha="left")
        x += 0.36 + 0.08 * len(label) + gap


def matrix(ax, x0, y_top, n, cell, fill: Callable[[int, int], tuple[str, str]], size=SMALL_TEXT):
    """An n x n grid with row 0 at the top; fill(i, j) gives (kind, label) for each cell."""
    for i in range(n):
        for j in range(n):
            kind, label = fill(i, j)
            x, y = x0 + j * cell, y_top - (i + 1) * cell
            ax.add_patch(Rectangle((x, y), cell, cell, facecolor=fill_of(kind),
                                   edgecolor="#ffffff", linewidth=1.5, zorder=3))
            text(ax, x + cell / 2, y + cell / 2, label, size=size)
        text(ax, x0 - 0.15, y_top - (i + 0.5) * cell, str(i), size=SMALL_TEXT, color=MUTED)
        text(ax, x0 + (i + 0.5) * cell, y_top + 0.15, str(i), size=SMALL_TEXT, color=MUTED)


def bar(ax, x, y, w, h, kind):
    """A vector drawn as a filled bar centred on (x, y); its height shows its length."""
    ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor=tint(PALETTE[kind], 0.45),
                           edgecolor=PALETTE[kind], linewidth=1.4, zorder=3))


def weight_matrix(ax, x0, y0, w, h, stripe_at, vertical, kind="mlp", stripe=0.16):
    """A weight matrix as a pale rectangle with one column (vertical) or one row highlighted at `stripe_at`."""
    ax.add_patch(Rectangle((x0, y0), w, h, facecolor=tint(PALETTE[kind], 0.2), edgecolor=PALETTE[kind], linewidth=1.4,
                           zorder=3))
    corner, size = ((stripe_at, y0), (stripe, h)) if vertical else ((x0, stripe_at), (w, stripe))
    ax.add_patch(Rectangle(corner, *size, facecolor=PALETTE[kind], edgecolor="none", zorder=4))


def gelu_new(x: float) -> float:
    return 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def curve(ax, b: Box, f: Callable[[float], float], lo: float, hi: float, kind="mlp", n=61):
    """Plot f on [lo, hi] inside box b (with thin axes through zero)."""
    xs = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    ys = [f(v) for v in xs]
    y_lo, y_hi = min(ys + [0.0]), max(ys)

    def to_box(u, v):
        return (b.x - b.w / 2 + b.w * (u - lo) / (hi - lo), b.y - b.h / 2 + b.h * (v - y_lo) / (y_hi - y_lo))

    ax.plot(*zip(*[to_box(lo, 0), to_box(hi, 0)], strict=True), color=MUTED, lw=0.8, zorder=4)
    ax.plot(*zip(*[to_box(0, y_lo), to_box(0, y_hi)], strict=True), color=MUTED, lw=0.8, zorder=4)
    ax.plot(*zip(*[to_box(u, v) for u, v in zip(xs, ys, strict=True)], strict=True), color=PALETTE[kind], lw=2.2,
            zorder=5)


def sub_layer(ax, read_x, add_x, stream_y, ln_label, body_label, kind):
    """One pre-LN sub-layer drawn small: read the stream, LayerNorm, the sub-layer, add the result back."""
    mid = (read_x + add_x) / 2
    ln = box(ax, Box(mid, stream_y + 0.72, 0.5, 0.3), ln_label, kind="ln", size=SMALL_TEXT, lw=1.2, z=4)
    body = box(ax, Box(mid, stream_y + 1.25, 0.55, 0.34), body_label, kind=kind, size=SMALL_TEXT, lw=1.2, z=4)
    arrow(ax, (read_x, stream_y + 0.05), (read_x, ln.y), ln.left, kind="resid", lw=1.3)
    arrow(ax, ln.top, body.bottom, kind="ln", lw=1.3)
    arrow(ax, body.right, (add_x, body.y), (add_x, stream_y + 0.15), kind=kind, lw=1.3)
    node(ax, add_x, stream_y)


def sequential_block(ax, left, stream_y, label):
    """GPT-2's pre-LN block: ln1, attention, add; then ln2, MLP, add. Two reads and two adds, one after the other."""
    box(ax, Box(left + 0.9, stream_y + 1.02, 1.8, 1.35), kind="plain", lw=1.2, fill="#ffffff", z=1)
    text(ax, left + 0.9, stream_y + 1.92, label, size=SMALL_TEXT, weight="bold")
    sub_layer(ax, left + 0.1, left + 0.82, stream_y, "ln1", "attn", "attn")
    sub_layer(ax, left + 0.98, left + 1.7, stream_y, "ln2", "MLP", "mlp")


# ---------------------------------------------------------------------------------------------------------------
# The diagrams, one function each. Every one returns its figure.


def architecture() -> Figure:
    fig, ax = canvas(12, 4.7, "GPT-2 small: tokens to logits")
    sy = 1.75
    tokens = box(ax, Box(0.75, sy, 1.15, 0.75), ["tokens", "(batch, pos)"], bold_first=True)
    embed = box(ax, Box(2.45, 2.65, 1.65, 0.72), ["embed", "W_E  (50257, 768)"], kind="embed", bold_first=True)
    pos = box(ax, Box(2.45, 0.85, 1.65, 0.72), ["pos_embed", "W_pos  (1024, 768)"], kind="embed", bold_first=True)
    arrow(ax, tokens.right, (1.48, sy), (1.48, embed.y), embed.left)
    arrow(ax, (1.48, sy), (1.48, pos.y), pos.left)
    text(ax, 1.55, sy + 0.45, "ids", size=SMALL_TEXT, ha="left", color=MUTED)
    text(ax, 1.55, sy - 0.45, "positions", size=SMALL_TEXT, ha="left", color=MUTED)
    node(ax, 3.55, sy)
    arrow(ax, embed.right, (3.55, embed.y), (3.55, sy + 0.14), kind="embed")
    arrow(ax, pos.right, (3.55, pos.y), (3.55, sy - 0.14), kind="embed")
    lnf = box(ax, Box(9.35, sy, 0.95, 0.62), "ln_final", kind="ln")
    stream(ax, 3.69, lnf.left[0], sy)
    sequential_block(ax, 3.85, sy, "block 0")
    text(ax, 6.15, sy + 1.0, "· · ·", size=TITLE, weight="bold")
    sequential_block(ax, 6.6, sy, "block 11")
    ax.plot([3.85, 3.85, 8.4, 8.4], [sy + 2.12, sy + 2.2, sy + 2.2, sy + 2.12], color=INK, lw=1.2)
    text(ax, 6.125, sy + 2.38, "n_layers = 12 blocks, one after another; each reads and adds twice", size=SMALL_TEXT)
    text(ax, 6.15, sy - 0.35, "residual stream  (batch, pos, d_model = 768)", color=PALETTE["resid"], weight="bold")
    unembed = box(ax, Box(10.95, sy, 1.65, 0.72), ["unembed", "W_U  (768, 50257)"], kind="embed", bold_first=True)
    arrow(ax, lnf.right, unembed.left, kind="ln")
    arrow(ax, unembed.bottom, (unembed.x, 0.95))
    lines(ax, unembed.x, 0.62, ["logits", "(batch, pos, 50257)"], size=SMALL_TEXT, bold_first=True)
    legend(ax, 0.3, 0.3, ["resid", "embed", "attn", "mlp", "ln"])
    return fig


def branch(ax, start_x, end_x, sy, by, ln_label, body: Box, body_rows, kind, out_label):
    """One residual branch: up from the stream, through a LayerNorm and a sublayer, and back down onto a +."""
    ln = box(ax, Box(start_x + 0.7, by, 0.8, 0.6), ln_label, kind="ln")
    box(ax, body, body_rows, kind=kind, bold_first=True)
    arrow(ax, (start_x, sy + 0.05), (start_x, by), ln.left, kind="resid")
    arrow(ax, ln.right, body.left, kind="ln")
    arrow(ax, body.right, (end_x, by), (end_x, sy + 0.15), kind=kind)
    node(ax, end_x, sy)
    text(ax, end_x + 0.1, (sy + by) / 2 - 0.1, out_label, size=SMALL_TEXT, ha="left", mono=True)


def transformer_block() -> Figure:
    fig, ax = canvas(12, 4.4, "One transformer block (pre-LayerNorm), the same in each of the 12 layers")
    sy, by = 1.75, 3.1
    stream(ax, 1.45, 10.75, sy)
    lines(ax, 0.75, sy, ["resid_pre", "(batch, pos, 768)"], size=SMALL_TEXT, bold_first=True, mono=(0,))
    lines(ax, 11.35, sy, ["resid_post", "(batch, pos, 768)"], size=SMALL_TEXT, bold_first=True, mono=(0,))
    branch(ax, 1.85, 5.3, sy, by, "ln1", Box(4.15, by, 1.7, 0.85), ["attention", "12 heads, 64 each"], "attn",
           "attn_out")
    dot(ax, 6.0, sy, kind="resid", r=0.08)
    lines(ax, 6.0, sy - 0.45, ["resid_mid", "(batch, pos, 768)"], size=SMALL_TEXT, bold_first=True, mono=(0,))
    branch(ax, 6.55, 10.0, sy, by, "ln2", Box(8.85, by, 1.7, 0.85), ["MLP", "768 → 3072 → 768"], "mlp", "mlp_out")
    text(ax, 3.6, 0.85, "resid_mid = resid_pre + attn(ln1(resid_pre))", size=SMALL_TEXT, mono=True)
    text(ax, 8.3, 0.85, "resid_post = resid_mid + mlp(ln2(resid_mid))", size=SMALL_TEXT, mono=True)
    text(ax, 6.0, 3.85, "each branch normalises its own copy; the stream itself is only ever added to",
         size=SMALL_TEXT, color=MUTED)
    legend(ax, 0.3, 0.3, ["resid", "attn", "mlp", "ln"])
    return fig


def attention_heads() -> Figure:
    fig, ax = canvas(12, 4.9, "Attention: 12 heads in parallel, their outputs summed")
    for k in (2, 1):  # two shadows behind head h stand for the other heads
        region(ax, 1.6 + 0.1 * k, 0.75 + 0.1 * k, 9.95 + 0.1 * k, 4.05 + 0.1 * k, "attn", amount=0.08)
    region(ax, 1.6, 0.75, 9.95, 4.05, "attn", amount=0.1)
    text(ax, 1.75, 3.83, "head h  (h = 0 … 11, all computed at once)", size=SMALL_TEXT, ha="left", weight="bold")
    x = box(ax, Box(0.8, 2.4, 1.3, 0.95), ["x", "ln1 output", "(batch, pos, 768)"], kind="resid", size=SMALL_TEXT,
            bold_first=True)
    projections = {}
    for name, y in (("Q", 3.15), ("K", 2.4), ("V", 1.45)):
        projections[name] = box(ax, Box(2.75, y, 1.35, 0.55), [f"W_{name}[h] + b_{name}[h]", "768 → 64"], kind="attn",
                                size=SMALL_TEXT)
        arrow(ax, x.right, (1.8, 2.4), (1.8, y), projections[name].left, kind="resid")
    text(ax, 1.8, 1.0, "q, k, v: (batch, pos, d_head = 64)", size=SMALL_TEXT, color=MUTED, ha="left")
    scores = box(ax, Box(4.95, 2.8, 1.7, 0.95), ["scores", "q · kᵀ / √64", "(batch, q_pos, k_pos)"], kind="attn",
                 size=SMALL_TEXT, bold_first=True)
    arrow(ax, projections["Q"].right, (3.75, 3.15), (3.75, 3.0), (scores.left[0], 3.0), kind="attn")
    arrow(ax, projections["K"].right, (3.75, 2.4), (3.75, 2.6), (scores.left[0], 2.6), kind="attn")
    text(ax, 3.9, 3.1, "q", size=SMALL_TEXT, ha="left")
    text(ax, 3.9, 2.5, "k", size=SMALL_TEXT, ha="left")
    pattern = box(ax, Box(6.85, 2.8, 1.55, 0.95), ["pattern", "causal mask,", "softmax over k_pos"], kind="attn",
                  size=SMALL_TEXT, bold_first=True)
    arrow(ax, scores.right, pattern.left, kind="attn")
    z = box(ax, Box(8.05, 1.6, 1.35, 0.8), ["z = pattern · v", "(batch, pos, 64)"], kind="attn", size=SMALL_TEXT)
    arrow(ax, pattern.bottom, (pattern.x, z.y + 0.15), (z.left[0], z.y + 0.15), kind="attn")
    arrow(ax, projections["V"].right, (z.left[0], z.y - 0.15), kind="attn")
    text(ax, 5.0, 1.2, "v", size=SMALL_TEXT)
    w_o = box(ax, Box(9.35, 2.8, 0.95, 0.8), ["W_O[h]", "64 → 768"], kind="attn", size=SMALL_TEXT)
    arrow(ax, z.right, (9.35, z.y), w_o.bottom, kind="attn")
    node(ax, 10.95, 2.8, "Σ", kind="attn", r=0.22)
    arrow(ax, w_o.right, (10.73, 2.8), kind="attn")
    lines(ax, 10.95, 3.45, ["sum over", "12 heads + b_O"], size=SMALL_TEXT)
    arrow(ax, (10.95, 2.58), (10.95, 1.75), kind="attn")
    lines(ax, 10.95, 1.45, ["attn_out", "(batch, pos, 768)"], size=SMALL_TEXT, bold_first=True)
    legend(ax, 0.3, 0.3, ["resid", "attn"])
    return fig


def qk_ov_circuits() -> Figure:
    fig, ax = canvas(12, 5.6, "One head as two circuits: QK decides where to look, OV decides what to move")
    region(ax, 1.75, 2.95, 11.85, 5.05, "qk", amount=0.35, lw=0)
    region(ax, 1.75, 0.25, 11.85, 2.6, "ov", amount=0.25, lw=0)
    for y, name, note, formula in (
        (4.8, "QK circuit: where to look", "W_Q W_Kᵀ is 768 × 768, rank ≤ 64",
         "score(i, j) = (x_i W_Q) · (x_j W_K) / √64 = x_i (W_Q W_Kᵀ) x_jᵀ / 8"),
        (2.35, "OV circuit: what to move", "W_V W_O is 768 × 768, rank ≤ 64",
         "out_i = Σ_j A(i, j) · x_j (W_V W_O)      (biases left out)"),
    ):
        text(ax, 2.3, y, name, ha="left", weight="bold")
        text(ax, 11.7, y, note, size=SMALL_TEXT, ha="right", color=MUTED)
        text(ax, 2.3, y - 0.33, formula, size=SMALL_TEXT, ha="left")
    x_i = box(ax, Box(0.85, 3.9, 1.4, 0.8), ["x_i  (768)", "query position i", "(destination)"], kind="resid",
              size=SMALL_TEXT, bold_first=True)
    x_j = box(ax, Box(0.85, 2.25, 1.4, 0.8), ["x_j  (768)", "key position j", "(source)"], kind="resid", size=SMALL_TEXT,
              bold_first=True)
    w_q = box(ax, Box(3.0, 3.9, 1.2, 0.5), ["W_Q  768 → 64"], kind="attn", size=SMALL_TEXT)
    w_k = box(ax, Box(3.0, 3.25, 1.2, 0.5), ["W_K  768 → 64"], kind="attn", size=SMALL_TEXT)
    w_v = box(ax, Box(3.0, 1.1, 1.2, 0.5), ["W_V  768 → 64"], kind="attn", size=SMALL_TEXT)
    arrow(ax, x_i.right, w_q.left, kind="resid")
    arrow(ax, x_j.right, (1.95, 2.25), (1.95, w_k.y), w_k.left, kind="resid")
    arrow(ax, (1.95, 2.25), (1.95, w_v.y), w_v.left, kind="resid")
    score = box(ax, Box(5.3, 3.6, 1.9, 0.7), ["q_i · k_j / 8", "one score per (i, j)"], kind="attn", size=SMALL_TEXT)
    arrow(ax, w_q.right, (3.9, w_q.y), (3.9, 3.75), (score.left[0], 3.75), kind="attn")
    arrow(ax, w_k.right, (3.9, w_k.y), (3.9, 3.45), (score.left[0], 3.45), kind="attn")
    soft = box(ax, Box(7.75, 3.6, 2.1, 0.7), ["causal mask, softmax", "over j ≤ i  →  A(i, j)"], kind="attn",
               size=SMALL_TEXT)
    arrow(ax, score.right, soft.left, kind="attn")
    z = box(ax, Box(7.75, 1.1, 2.1, 0.6), ["z_i = Σ_j A(i, j) v_j   (64)"], kind="attn", size=SMALL_TEXT)
    arrow(ax, w_v.right, z.left, kind="attn")
    text(ax, 5.3, 1.27, "v_j  (64)", size=SMALL_TEXT)
    arrow(ax, soft.bottom, z.top, kind="attn", lw=2.2)
    lines(ax, 8.9, 2.82, ["pattern A weights the", "sources (sums to 1)"], size=SMALL_TEXT, ha="left")
    w_o = box(ax, Box(9.75, 1.1, 1.2, 0.5), ["W_O  64 → 768"], kind="attn", size=SMALL_TEXT)
    arrow(ax, z.right, w_o.left, kind="attn")
    arrow(ax, w_o.right, (11.05, 1.1), kind="attn")
    lines(ax, 11.4, 1.1, ["added at", "position i", "(768)"], size=SMALL_TEXT)
    return fig


def causal_mask() -> Figure:
    fig, ax = canvas(11, 5.9)
    cell, top = 0.42, 4.6
    left_x, right_x = 1.2, 6.55
    title = ["scores after the mask", "one head, 8 positions: (query_pos, key_pos)"]
    lines(ax, left_x + 4 * cell, 5.5, title, size=FONT, bold_first=True)
    matrix(ax, left_x, top, 8, cell, lambda i, j: ("attn", "s") if j <= i else ("mask", "−∞"))
    lines(ax, right_x + 4 * cell, 5.5, ["pattern = softmax over each row", "(shown for equal scores)"], bold_first=True)
    matrix(ax, right_x, top, 8, cell, lambda i, j: ("attn", "1" if i == 0 else f"1/{i + 1}") if j <= i else ("mask", "0"))
    for x0 in (left_x, right_x):
        text(ax, x0 + 4 * cell, top + 0.4, "key position j →", size=SMALL_TEXT, color=MUTED)
        text(ax, x0 - 0.45, top - 4 * cell, "query position i →", size=SMALL_TEXT, color=MUTED, rotation=-90)
    arrow(ax, (left_x + 8 * cell + 0.25, top - 4 * cell), (right_x - 0.6, top - 4 * cell), kind="attn", lw=2.2)
    text(ax, (left_x + 8 * cell + right_x - 0.35) / 2, top - 4 * cell + 0.3, "softmax", size=SMALL_TEXT)
    legend(ax, 0.3, 0.95, ["attn", "mask"])
    text(ax, 0.3, 0.6, "Row i is query position i: it may look at keys 0 … i (s: a score that is kept). Every score "
         "with j > i (grey) is set to", size=SMALL_TEXT, ha="left")
    text(ax, 0.3, 0.3, "IGNORE = −∞, so the softmax gives it weight 0 and no position sees the future. "
         "Real shape: (batch, 12, pos, pos).", size=SMALL_TEXT, ha="left")
    return fig


def mlp() -> Figure:
    fig, ax = canvas(12, 5.0, "The MLP: each position on its own, 768 → 3072 → 768")
    y, short, tall = 2.25, 0.75, 3.0
    specs = [(0.8, short, "resid", ["x  (ln2 output)", "(batch, pos, 768)"]),
             (4.05, tall, "mlp", ["pre  (hook_pre)", "(batch, pos, 3072)"]),
             (7.65, tall, "mlp", ["post  (hook_post)", "(batch, pos, 3072)"]),
             (11.1, short, "resid", ["mlp_out", "(batch, pos, 768)"])]
    for x, h, kind, label in specs:
        bar(ax, x, y, 0.32, h, kind)
        above = h == tall
        lines(ax, x, y + h / 2 + 0.32 if above else y - h / 2 - 0.4, label, size=SMALL_TEXT, bold_first=True)
    w_in = box(ax, Box(2.4, y, 1.75, 0.95), ["W_in  (768, 3072)", "+ b_in  (3072)"], kind="mlp", size=SMALL_TEXT,
               bold_first=True)
    gelu = box(ax, Box(5.85, y, 2.1, 1.5), [], kind="mlp")
    curve(ax, Box(5.85, y - 0.12, 1.5, 0.9), gelu_new, -3.0, 3.0)
    text(ax, 5.85, y + 0.55, "gelu_new (tanh GELU)", size=SMALL_TEXT, weight="bold")
    w_out = box(ax, Box(9.4, y, 1.75, 0.95), ["W_out  (3072, 768)", "+ b_out  (768)"], kind="mlp", size=SMALL_TEXT,
                bold_first=True)
    for a, b in ((0.96, w_in.left[0]), (w_in.right[0], 3.89), (4.21, gelu.left[0]), (gelu.right[0], 7.49),
                 (7.81, w_out.left[0]), (w_out.right[0], 10.94)):
        arrow(ax, (a, y), (b, y), kind="mlp")
    text(ax, 5.85, 0.3, "gelu_new(x) = ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))   ·   no mixing between positions",
         size=SMALL_TEXT)
    return fig


def mlp_neurons() -> Figure:
    fig, ax = canvas(12, 5.0, "3072 neurons, each a key–value pair")
    text(ax, 0.2, 4.4, "Neuron n fires when x points along its key (column n of W_in), then writes its value "
         "(row n of W_out), scaled by how much it fired.", size=SMALL_TEXT, ha="left")
    y = 2.1
    bar(ax, 0.6, y, 0.3, 2.0, "resid")
    lines(ax, 0.6, 0.65, ["x", "(768)"], size=SMALL_TEXT, bold_first=True)
    x0, x1, col = 1.3, 4.3, 3.05
    weight_matrix(ax, x0, y - 1.0, x1 - x0, 2.0, col, vertical=True)
    text(ax, (x0 + x1) / 2, 3.4, "W_in  (768, 3072)", size=SMALL_TEXT, weight="bold")
    text(ax, 1.13, y + 0.55, "768", size=SMALL_TEXT, rotation=90, color=MUTED)
    text(ax, (x0 + x1) / 2, 0.9, "3072 columns, one per neuron", size=SMALL_TEXT, color=MUTED)
    lines(ax, col + 0.08, 0.45, ["column n: input direction (key)"], size=SMALL_TEXT)
    arrow(ax, (0.75, y), (x0, y), kind="resid")
    neuron = (5.9, y)
    ax.add_patch(Circle(neuron, 0.36, facecolor=tint(PALETTE["mlp"], 0.45), edgecolor=PALETTE["mlp"], linewidth=1.8,
                        zorder=5))
    text(ax, *neuron, "n", size=FONT, weight="bold")
    arrow(ax, (col + 0.16, y), (neuron[0] - 0.36, y), kind="mlp")
    lines(ax, neuron[0], 3.3, ["pre_n = x · W_in[:, n] + b_in[n]", "a_n = gelu_new(pre_n)", "(one number)"],
          size=SMALL_TEXT, mono=(0, 1))
    w0, w1, row = 7.5, 8.5, y - 0.08
    weight_matrix(ax, w0, y - 1.5, w1 - w0, 3.0, row, vertical=False)
    text(ax, (w0 + w1) / 2, 3.85, "W_out  (3072, 768)", size=SMALL_TEXT, weight="bold")
    text(ax, (w0 + w1) / 2, y - 1.75, "row n: output direction (value)", size=SMALL_TEXT)
    arrow(ax, (neuron[0] + 0.36, y), (w0, y), kind="mlp")
    text(ax, 6.95, y - 0.25, "× a_n", size=SMALL_TEXT, mono=True)
    bar(ax, 9.2, y, 0.3, 2.0, "resid")
    arrow(ax, (w1, y), (9.05, y), kind="mlp")
    lines(ax, 10.6, y + 0.5, ["a_n · W_out[n, :]", "(768): neuron n's", "share of mlp_out"], size=SMALL_TEXT,
          mono=(0,))
    lines(ax, 10.6, y - 0.6, ["mlp_out =", "Σ_n a_n W_out[n, :] + b_out", "(all 3072 neurons)"], size=SMALL_TEXT)
    return fig


LN_TOY = [1.8, 3.2, 0.6, 2.6, 4.0, 1.2, 2.9, 3.7]  # an 8-feature stand-in for a 768-feature vector
LN_W = [1.5, 0.5, 1.0, 1.8, 0.7, 1.2, 0.4, 1.0]
LN_B = [0.3, -0.4, 0.5, 0.0, -0.5, 0.2, 0.6, -0.2]


def layernorm_stages() -> list[list[float]]:
    mean = sum(LN_TOY) / len(LN_TOY)
    centred = [v - mean for v in LN_TOY]
    scale = math.sqrt(sum(v * v for v in centred) / len(centred) + 1e-5)
    normalised = [v / scale for v in centred]
    scaled = [v * w for v, w in zip(normalised, LN_W, strict=True)]
    shifted = [v + b for v, b in zip(scaled, LN_B, strict=True)]
    return [LN_TOY, centred, normalised, scaled, shifted]


def mini_bars(ax, x0, base, values, unit=0.34, width=1.15):
    step = width / len(values)
    ax.plot([x0 - 0.05, x0 + width + 0.05], [base, base], color=MUTED, lw=0.9, zorder=3)
    for k, v in enumerate(values):
        ax.add_patch(Rectangle((x0 + k * step + 0.02, min(base, base + v * unit)), step - 0.04, abs(v) * unit,
                               facecolor=tint(PALETTE["resid"], 0.7), edgecolor="none", zorder=4))


def layernorm() -> Figure:
    fig, ax = canvas(12, 4.4, "LayerNorm in four steps, for each position separately")
    base, pitch, x_first = 2.2, 2.45, 0.45
    captions = [["x", "(batch, pos, 768)"], ["centred", "mean 0"], ["normalised", "variance 1", "hook_normalized"],
                ["scaled", "× w"], ["out", "(batch, pos, 768)", "hook_out"]]
    for k, (values, caption) in enumerate(zip(layernorm_stages(), captions, strict=True)):
        mini_bars(ax, x_first + k * pitch, base, values)
        lines(ax, x_first + k * pitch + 0.575, 0.85, caption, size=SMALL_TEXT, bold_first=True, mono=(2,))
    steps = [["1  centre", "x − mean(x)"], ["2  normalise", "÷ √(var + ε)"], ["3  scale", "× w  (768)"],
             ["4  shift", "+ b  (768)"]]
    for k, rows in enumerate(steps):
        b = box(ax, Box(x_first + 1.15 + 0.65 + k * pitch, base + 1.05, 1.15, 0.62), rows, kind="ln", size=SMALL_TEXT,
                bold_first=True)
        arrow(ax, (b.x - 0.55, base + 0.3), (b.x + 0.55, base + 0.3), kind="ln")
    text(ax, 0.2, 0.25, "mean and variance are taken over the 768 features of one position; ε = 1e-5;"
         " hook_scale = √(var + ε), shape (batch, pos, 1).  Bars: a toy 8-feature vector.", size=SMALL_TEXT, ha="left",
         color=MUTED)
    return fig


def fused_mha() -> Figure:
    fig, ax = canvas(12, 4.7, "Fused multi-head attention: all 12 heads in one set of matrix products")
    top, low, w, h = 3.3, 1.15, 2.6, 1.15
    xs = [2.95, 5.8, 8.65]
    x_in = box(ax, Box(0.8, top, 1.25, 0.75), ["x", "(4, 100, 768)"], kind="resid", size=SMALL_TEXT, bold_first=True)
    out = box(ax, Box(0.8, low, 1.25, 0.75), ["attn_out", "(4, 100, 768)"], kind="resid", size=SMALL_TEXT,
              bold_first=True)
    steps = [
        (xs[0], top, ["1  project", "three Linear(768, 768)", "q, k, v: (4, 100, 768)"]),
        (xs[1], top, ["2  split", ".view(4, 100, 12, 64)", "→ (4, 100, 12, 64)"]),
        (xs[2], top, ["3  heads first", ".transpose(1, 2)", "→ (4, 12, 100, 64)"]),
        (xs[2], low, ["4  attend", "q @ kᵀ / √64, mask, softmax", "@ v → (4, 12, 100, 64)"]),
        (xs[1], low, ["5  merge", ".transpose(1, 2).contiguous()", ".view(4, 100, 768)"]),
        (xs[0], low, ["6  project out", "out_proj = Linear(768, 768)", "→ (4, 100, 768)"]),
    ]
    boxes = [box(ax, Box(x, y, w, h), rows, kind="attn", size=SMALL_TEXT, bold_first=True) for x, y, rows in steps]
    arrow(ax, x_in.right, boxes[0].left, kind="resid")
    for a, b in zip(boxes[:2], boxes[1:3], strict=True):
        arrow(ax, a.right, b.left, kind="attn")
    arrow(ax, boxes[2].bottom, boxes[3].top, kind="attn")
    for a, b in zip(boxes[3:5], boxes[4:6], strict=True):
        arrow(ax, a.left, b.right, kind="attn")
    arrow(ax, boxes[5].left, out.right, kind="attn")
    lines(ax, 11.05, 2.2, ["batch = 4", "pos = 100", "n_heads = 12", "d_head = 64", "12 × 64 = 768"], size=SMALL_TEXT)
    text(ax, 6.0, 0.3, "Steps 2–3 only relabel memory; step 5 needs .contiguous() because transpose leaves the "
         "numbers out of order for .view.", size=SMALL_TEXT, color=MUTED)
    return fig


def hook(ax, x, y, name, side="right", shape=None):
    """A hook: a black dot on the line it watches, its cache key beside it (and its shape under the key)."""
    dot(ax, x, y, r=0.065)
    dx, dy, ha = {"right": (0.12, 0, "left"), "left": (-0.12, 0, "right"), "above": (-0.08, 0.2, "left"),
                  "below": (0, -0.3, "center"), "below left": (0.05, -0.3, "right")}[side]
    text(ax, x + dx, y + dy, name, size=SMALL_TEXT, ha=ha, mono=True)
    if shape:
        text(ax, x + dx, y + dy - 0.24, shape, size=SMALL_TEXT, ha=ha, color=MUTED)


def hook_map() -> Figure:
    fig, ax = canvas(12.3, 6.4, "Where the hooks sit: the cache key of each activation")
    text(ax, 0.2, 5.8, "● marks a hook and its key. Every activation is (batch, pos, 768) unless a shape is given "
         "(b = batch).", size=SMALL_TEXT, ha="left", color=MUTED)
    sy, ln_y, up_y = 1.3, 2.05, 2.55  # the stream; the LayerNorm boxes; where their output hooks sit
    # Embeddings
    tokens = box(ax, Box(0.6, 5.05, 1.0, 0.42), "tokens", size=SMALL_TEXT)
    embed = box(ax, Box(0.6, 4.2, 0.8, 0.45), "W_E", kind="embed", size=SMALL_TEXT)
    text(ax, 0.6, 3.5, "positions", size=SMALL_TEXT, color=MUTED)
    pos = box(ax, Box(0.6, 2.85, 0.8, 0.45), "W_pos", kind="embed", size=SMALL_TEXT)
    arrow(ax, tokens.bottom, embed.top)
    arrow(ax, (0.6, 3.35), pos.top)
    node(ax, 2.45, sy)
    arrow(ax, embed.right, (2.45, embed.y), (2.45, sy + 0.14), kind="embed")
    arrow(ax, pos.right, (2.45, pos.y), kind="embed", head=False)
    hook(ax, 1.2, embed.y, "hook_embed", side="above")
    hook(ax, 1.2, pos.y, "hook_pos_embed", side="above")
    # Block 0: every key in here starts with "blocks.0."
    region(ax, 2.7, 0.5, 9.9, 5.5, "plain", amount=0.04, lw=1.0, dashed=True)
    text(ax, 2.85, 5.28, "blocks.0", ha="left", weight="bold", mono=True)
    text(ax, 9.75, 5.28, "(prefix of every key in this box; blocks.1 … blocks.11 are the same)", size=SMALL_TEXT,
         ha="right", color=MUTED)
    stream(ax, 2.59, 10.35, sy, head=False)
    hook(ax, 2.85, sy, "", side="below")
    text(ax, 2.8, sy - 0.32, "blocks.0.hook_resid_pre", size=SMALL_TEXT, ha="left", mono=True)
    for branch_x, name, sub in ((3.35, "ln1", (2.95, 6.75, 2.85, 5.0)), (7.65, "ln2", (7.2, 9.35, 2.85, 4.3))):
        ln = box(ax, Box(branch_x, ln_y, 0.6, 0.42), name, kind="ln", size=SMALL_TEXT)
        arrow(ax, (branch_x, sy + 0.05), ln.bottom, kind="resid")
        arrow(ax, ln.top, (branch_x, sub[2]), kind="ln")
        hook(ax, branch_x, up_y, f"{name}.hook_out")
    attn = box(ax, Box(4.85, 3.925, 3.8, 2.15), [], kind="attn", fill=tint(PALETTE["attn"], 0.12))
    text(ax, 3.1, 4.75, "attn", weight="bold", ha="left")
    rows = [("attn.hook_q", "(b, pos, 12, 64)"), ("attn.hook_k", "(b, pos, 12, 64)"), ("attn.hook_v", "(b, pos, 12, 64)"),
            ("attn.hook_attn_scores", "(b, 12, pos, pos)"), ("attn.hook_pattern", "(b, 12, pos, pos)"),
            ("attn.hook_z", "(b, pos, 12, 64)")]
    for k, (name, shape) in enumerate(rows):
        yy = 4.45 - k * 0.28
        hook(ax, 3.2, yy, name)
        text(ax, 6.65, yy, shape, size=SMALL_TEXT, ha="right", color=MUTED)
    mlp_box = box(ax, Box(8.275, 3.575, 2.15, 1.45), [], kind="mlp", fill=tint(PALETTE["mlp"], 0.12))
    text(ax, 7.35, 4.05, "mlp", weight="bold", ha="left")
    hook(ax, 7.45, 3.75, "mlp.hook_pre")
    hook(ax, 7.45, 3.45, "mlp.hook_post")
    text(ax, 8.275, 3.1, "(b, pos, 3072)", size=SMALL_TEXT, color=MUTED)
    for out_x, sub, name in ((7.0, attn, "hook_attn_out"), (9.6, mlp_box, "hook_mlp_out")):
        arrow(ax, (sub.right[0], 3.3), (out_x, 3.3), (out_x, sy + 0.15), kind="attn" if sub is attn else "mlp")
        node(ax, out_x, sy)
        hook(ax, out_x, 2.2 if sub is attn else 2.25, name, side="left")
    hook(ax, 7.3, sy, "hook_resid_mid", side="below")
    hook(ax, 9.8, sy, "hook_resid_post", side="below left")
    # Final LayerNorm and unembedding
    lnf = box(ax, Box(10.35, ln_y, 0.8, 0.42), "ln_final", kind="ln", size=SMALL_TEXT)
    arrow(ax, (10.35, sy - 0.05), lnf.bottom, kind="resid", lw=2.5)
    unembed = box(ax, Box(10.35, 3.3, 0.8, 0.45), "W_U", kind="embed", size=SMALL_TEXT)
    arrow(ax, lnf.top, unembed.bottom, kind="ln")
    hook(ax, 10.35, up_y, "ln_final.hook_out")
    arrow(ax, unembed.top, (10.35, 4.1), kind="embed")
    hook(ax, 10.35, 4.15, "logits", shape="(b, pos, 50257)")
    legend(ax, 0.3, 0.2, ["resid", "embed", "attn", "mlp", "ln"])
    return fig


def induction_circuit() -> Figure:
    fig, ax = canvas(12, 5.9, "The induction circuit: find the earlier A, copy the B that followed it")
    cols = {"k-1": 1.3, "k": 3.6, "q": 8.1}
    base, top = 0.95, 4.75
    for x in cols.values():
        arrow(ax, (x, base + 0.35), (x, top), kind="resid", lw=3, head=False, z=2)
    for name, token in (("k-1", "A"), ("k", "B"), ("q", "A")):
        box(ax, Box(cols[name], base, 1.25, 0.6), [f"token {token}", f"position {name}"], size=SMALL_TEXT, bold_first=True)
    text(ax, 5.85, base, "…  (other tokens)  …", size=SMALL_TEXT, color=MUTED)
    # Layer 0: the previous-token head moves A from position k-1 into position k.
    region(ax, 0.35, 1.55, 11.75, 2.75, "attn", amount=0.1)
    text(ax, 0.5, 2.55, "layer 0", size=SMALL_TEXT, ha="left", weight="bold")
    prev = box(ax, Box(2.45, 2.05, 1.55, 0.62), ["previous-token", "head"], kind="attn", size=SMALL_TEXT)
    arrow(ax, (cols["k-1"], 2.05), prev.left, kind="attn")
    arrow(ax, prev.right, (cols["k"] - 0.05, 2.05), kind="attn")
    node(ax, cols["k"], 2.05, "+", r=0.12)
    lines(ax, 5.9, 2.1, ["OV writes \"the previous token was A\"", "into position k's residual stream"], size=SMALL_TEXT)
    # Layer 1: the induction head at q matches its query (A) with k's key (previous token A) and copies B.
    region(ax, 0.35, 2.95, 11.75, 4.45, "attn", amount=0.1)
    text(ax, 0.5, 4.25, "layer 1", size=SMALL_TEXT, ha="left", weight="bold")
    key = box(ax, Box(cols["k"], 3.45, 1.75, 0.62), ["key: W_K reads", "\"previous token A\""], kind="qk", size=SMALL_TEXT)
    query = box(ax, Box(cols["q"], 3.45, 1.75, 0.62), ["query: W_Q reads", "\"current token A\""], kind="qk", size=SMALL_TEXT)
    arrow(ax, (query.left[0], 3.55), (key.right[0], 3.55), kind="attn", lw=2.2)
    lines(ax, 5.85, 3.82, ["induction head attends q → k", "(QK: A matches A)"], size=SMALL_TEXT)
    lines(ax, 5.85, 3.2, ["K-composition: the key", "reads layer 0's output"], size=SMALL_TEXT, color=MUTED)
    value = box(ax, Box(cols["k"], 4.12, 1.75, 0.42), ["value: token B"], kind="ov", size=SMALL_TEXT)
    arrow(ax, value.right, (cols["q"] - 0.05, 4.12), kind="attn", lw=2.2)
    node(ax, cols["q"], 4.12, "+", r=0.12)
    lines(ax, 5.85, 4.28, ["OV copies B to position q"], size=SMALL_TEXT)
    out = box(ax, Box(10.35, 5.1, 2.1, 0.62), ["logits at q:", "predict B"], kind="embed", size=SMALL_TEXT, bold_first=True)
    arrow(ax, (cols["q"], top), (cols["q"], 5.1), out.left, kind="resid")
    legend(ax, 0.35, 0.25, ["resid", "attn", "embed"])
    return fig


DIAGRAMS: dict[str, Callable[[], Figure]] = {
    "architecture.svg": architecture,
    "transformer_block.svg": transformer_block,
    "attention_heads.svg": attention_heads,
    "qk_ov_circuits.svg": qk_ov_circuits,
    "causal_mask.svg": causal_mask,
    "mlp.svg": mlp,
    "mlp_neurons.svg": mlp_neurons,
    "layernorm.svg": layernorm,
    "fused_mha.svg": fused_mha,
    "hook_map.svg": hook_map,
    "induction_circuit.svg": induction_circuit,
}


# ---------------------------------------------------------------------------------------------------------------
# Rendering, writing and checking


def render(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def generate() -> dict[Path, bytes]:
    """Draw every diagram into memory: {path under diagrams/: SVG bytes}."""
    with matplotlib.rc_context(RC):
        return {OUT / name: render(draw()) for name, draw in DIAGRAMS.items()}


def write(files: dict[Path, bytes]) -> int:
    OUT.mkdir(exist_ok=True)
    changed = [p for p, data in files.items() if not p.exists() or p.read_bytes() != data]
    for path in changed:
        path.write_bytes(files[path])
    print(f"Diagrams: {len(changed)} redrawn, {len(files) - len(changed)} already current, in {OUT.relative_to(ROOT)}/")
    return 0


def check(files: dict[Path, bytes]) -> int:
    """0 if every committed diagram equals its fresh drawing byte for byte; else 1, naming the stale ones."""
    stale = [p for p, data in files.items() if not p.exists() or p.read_bytes() != data]
    if stale:
        print("Diagrams are stale; run `make diagrams` and commit the result:")
        for path in stale:
            print("  " + (str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)))
        return 1
    print(f"Diagrams are current ({len(files)} files).")
    return 0


def main(argv: list[str] | None = None) -> int:
    return generated_cli(__doc__, generate, write, check, argv)

if __name__ == "__main__":
    sys.exit(main())
