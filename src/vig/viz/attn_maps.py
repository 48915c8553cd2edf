"""`vig viz attn`: implicit attention maps of one BiGLA layer on one image, as in the paper's Fig. 5.

Shown is the magnitude |W| of the implicit attention weights (they are unnormalised and can be
negative). For one query token: its row of |W|, over the key tokens. For `--token all`: the
attention each key receives, averaged over all queries (column mean of |W|), plus the full
T x T matrices of |W| (forward lower-triangular, backward upper-triangular).
"""
import numpy as np
import torch
import torch.nn.functional as F

from vig.errors import UsageError
from vig.viz.attention import implicit_attention
from vig.viz.capture import capture, list_mixers, resolve_layer
from vig.viz.io import to_tensor
from vig.viz.model import normalisation

DIRECTIONS = ("forward", "backward", "merged")


def parse_token(text):
    """"X,Y" (column, row on the layer's token grid), "all" or None (the centre token)."""
    if text is None or text == "all":
        return text
    try:
        x, y = (int(p) for p in text.split(","))
    except ValueError:
        raise UsageError(f"--token: expected X,Y (token column,row) or 'all', got {text!r}") from None
    return x, y


def attention_maps(model, rgb, layer=None, head=0, token=None):
    """Captures the layer on the image and returns a dict with the grid, the query and the maps."""
    index, name, mixer = resolve_layer(list_mixers(model), layer)
    mean, std = normalisation(model)
    (q, k, v, g_fwd, g_bwd), (h, w) = capture(model, mixer, to_tensor(rgb, mean, std))
    heads = q.shape[2]
    if not 0 <= head < heads:
        raise UsageError(f"--head {head} is out of range: layer {index} ({name}) has {heads} heads (0..{heads - 1})")
    if token is None:
        token = (w // 2, h // 2)
    if token != "all":
        x, y = token
        if not (0 <= x < w and 0 <= y < h):
            raise UsageError(f"--token {x},{y} is outside the {w}x{h} token grid of layer {index} "
                             f"(X in 0..{w - 1}, Y in 0..{h - 1})")
    sl = slice(head, head + 1)
    query = None if token == "all" else token[1] * w + token[0]
    weights = implicit_attention(q[:1, :, sl], k[:1, :, sl], g_fwd[:1, :, sl], g_bwd[:1, :, sl], query=query)
    weights = [wt[0, 0].numpy() for wt in weights]  # each [Q, T]
    result = {"layer": index, "layer_name": name, "head": head, "heads": heads, "grid": (h, w),
              "token": token, "weights": dict(zip(DIRECTIONS, weights))}
    if token == "all":
        result["maps"] = {d: np.abs(wt).mean(axis=0).reshape(h, w) for d, wt in zip(DIRECTIONS, weights)}
    else:
        result["maps"] = {d: np.abs(wt[0]).reshape(h, w) for d, wt in zip(DIRECTIONS, weights)}
    return result


def _upsample(grid_map, size):
    t = torch.from_numpy(np.ascontiguousarray(grid_map, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def _block_mean(matrix, max_side=784):
    """Shrinks a large T x T matrix for display by averaging f x f blocks."""
    f = -(-matrix.shape[0] // max_side)
    if f == 1:
        return matrix
    n = matrix.shape[0] // f * f
    return matrix[:n, :n].reshape(n // f, f, n // f, f).mean(axis=(1, 3))


def attention_figure(rgb, result, model_name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    size = rgb.shape[0]
    h, w = result["grid"]
    token = result["token"]
    is_all = token == "all"
    maps = result["maps"]
    vmax = max(float(m.max()) for m in maps.values()) or 1.0
    rows = 2 if is_all else 1
    fig, axes = plt.subplots(rows, 4, figsize=(15, 3.9 * rows), squeeze=False)
    axes[0, 0].imshow(rgb)
    axes[0, 0].set_title("(a) image", fontsize=10)
    what = "mean |W| received per key (avg over all queries)" if is_all else f"|W| of query token ({token[0]},{token[1]})"
    letters = "bcd"
    heat = None
    for i, d in enumerate(DIRECTIONS):
        ax = axes[0, i + 1]
        ax.imshow(rgb)
        heat = ax.imshow(_upsample(maps[d], size), cmap="jet", alpha=0.55, vmin=0, vmax=vmax)
        ax.set_title(f"({letters[i]}) {d} attention", fontsize=10)
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
        if not is_all:  # mark the query token's cell
            _mark_token(ax, token, size, (h, w), Rectangle)
    cbar = fig.colorbar(heat, ax=list(axes[0, 1:]), fraction=0.02, pad=0.01)
    cbar.set_label(f"{what}\n(one scale for all three)", fontsize=8)
    if is_all:
        _matrix_row(fig, axes[1], result, LogNorm)
    fig.suptitle(f"{model_name}: BiGLA implicit attention, layer {result['layer']} ({result['layer_name']}), "
                 f"head {result['head']}/{result['heads']}, token grid {w}x{h}", fontsize=11)
    return fig


def _mark_token(ax, token, size, grid, Rectangle):
    """Outline and cross on the query token's cell. Pixel i spans i - 0.5 .. i + 0.5 in imshow's data space;
    the limits are pinned there, else a cell on the last row/column lets ax.plot widen them (a white band)."""
    h, w = grid
    x0, y0 = token[0] * size / w - 0.5, token[1] * size / h - 0.5
    ax.add_patch(Rectangle((x0, y0), size / w, size / h, fill=False, edgecolor="white", linewidth=2))
    ax.plot(x0 + size / w / 2, y0 + size / h / 2, marker="x", color="red", markersize=9, mew=2.5)
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(size - 0.5, -0.5)


def _matrix_row(fig, axes, result, LogNorm):
    mats = {d: _block_mean(np.abs(wt)) for d, wt in result["weights"].items()}
    top = max(float(m.max()) for m in mats.values()) or 1.0
    norm = LogNorm(vmin=top * 1e-4, vmax=top)
    axes[0].axis("off")
    axes[0].text(0, 0.5, "T x T matrices of |W|\nrow = query, column = key,\nraster token order;\n"
                 "forward: keys s <= t,\nbackward: keys s >= t,\nmerged = (fwd + bwd) / 2",
                 fontsize=10, va="center", transform=axes[0].transAxes)
    im = None
    for ax, d in zip(axes[1:], DIRECTIONS):
        T = result["weights"][d].shape[1]  # label axes in token indices even when shrunk for display
        im = ax.imshow(np.maximum(mats[d], top * 1e-4), cmap="magma", norm=norm, interpolation="nearest",
                       extent=(0, T, T, 0))
        ax.set_title(f"{d} attention matrix", fontsize=10)
        ax.set_xlabel("key token")
    axes[1].set_ylabel("query token")
    cbar = fig.colorbar(im, ax=list(axes[1:]), fraction=0.02, pad=0.01)
    cbar.set_label("|W| (log scale)", fontsize=8)
