"""Effective receptive field (ERF), measured as in RepLKNet (Ding et al. 2022).

For each image: the gradient of the centre response (sum over channels of the ReLU'd centre
location of the last feature map) w.r.t. the input pixels, absolute value, summed over colour
channels. (RepLKNet clips the gradient with a ReLU instead; |.| also counts negative influence.)
The per-image maps are averaged; for display and the area ratios the mean map is scaled as
log10(x + 1) and divided by its maximum, as RepLKNet's analysis does.

The centre unit F[h // 2, w // 2] sees the image centre only where the net's padding and stride put it there:
at 224 px ResNet's and ViG-H's 7x7 unit 3 is centred near pixel 96, DeiT's 14x14 unit 7 on 119.5, plain ViG's near
115.
RepLKNet (1024 px) centres its area squares on the image; here they are centred on the ERF's own centre of mass,
so an off-centre unit does not inflate its area ratios.
"""
import numpy as np
import torch

from vig.viz.io import load_image, to_tensor
from vig.viz.model import centre_response, normalisation

AREA_THRESHOLDS = (0.2, 0.3, 0.5, 0.99)


def erf_map(model, image_paths, img_size, batch_size=4, progress=None):
    """Mean |d centre / d input| over the images, summed over channels: float64 [img_size, img_size]."""
    mean, std = normalisation(model)
    total = np.zeros((img_size, img_size), dtype=np.float64)
    for start in range(0, len(image_paths), batch_size):
        paths = image_paths[start:start + batch_size]
        x = torch.cat([to_tensor(load_image(p, img_size), mean, std) for p in paths])
        x.requires_grad_(True)
        # Samples do not interact in eval mode, so one backward of the batch sum gives every
        # sample's own gradient.
        (grad,) = torch.autograd.grad(centre_response(model, x), x)
        total += grad.abs().sum(dim=(0, 1)).double().numpy()
        if progress is not None:
            progress.update(len(paths))
    return total / len(image_paths)


def scale_erf(raw):
    scaled = np.log10(np.asarray(raw, dtype=np.float64) + 1)
    peak = scaled.max()
    return scaled / peak if peak > 0 else scaled


def area_ratio(scaled, threshold, centre=None):
    """Smallest square around `centre` ((y, x) pixel; default the image centre) holding more than `threshold` of
    the map's total, as a fraction of the image area (RepLKNet's "high-contribution area ratio"; a square that
    reaches the border counts the area inside the image). Returns (side in pixels, ratio); the side is the square's
    before that clipping, so near a border it can exceed the image while the ratio stays <= 1."""
    h, w = scaled.shape
    total = scaled.sum()
    if total <= 0:
        return None, None
    cy, cx = (h // 2, w // 2) if centre is None else centre
    for r in range(0, max(h, w)):
        box = scaled[max(0, cy - r):cy + r + 1, max(0, cx - r):cx + r + 1]
        if box.sum() / total > threshold or box.size == h * w:
            return 2 * r + 1, min(1.0, box.size / (h * w))
    return h, 1.0


def summarise(raw):
    scaled = scale_erf(raw)
    h, w = scaled.shape
    py, px = np.unravel_index(int(np.argmax(raw)), raw.shape)
    ys, xs = np.mgrid[:h, :w]
    mass = raw.sum()
    centroid = [float((raw * xs).sum() / mass), float((raw * ys).sum() / mass)] if mass > 0 else None
    # the area squares' centre: the centroid's nearest pixel (the image centre for an all-zero map)
    cx, cy = (int(np.floor(c + 0.5)) for c in centroid) if centroid else (w // 2, h // 2)
    ratios = {}
    for t in AREA_THRESHOLDS:
        side, ratio = area_ratio(scaled, t, (cy, cx))
        ratios[f"{t:g}"] = {"side_px": side, "area_ratio": ratio}
    return {
        "high_contribution_area": ratios,
        "area_centre_px": [cx, cy],
        "peak_px": [int(px), int(py)],
        "peak_distance_to_centre_px": float(np.hypot(px - w // 2, py - h // 2)),
        "centroid_px": centroid,
        "raw_max": float(raw.max()),
        "raw_mean": float(raw.mean()),
    }


def erf_figure(scaled_maps, summaries):
    """One panel per model, like the paper's Fig. 6: the scaled ERF with one shared colour bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(scaled_maps)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 0.6, 3.6), squeeze=False)
    im = None
    for ax, (name, scaled) in zip(axes[0], scaled_maps.items()):
        im = ax.imshow(scaled, cmap="RdYlGn", vmin=0, vmax=1)
        half = summaries[name]["high_contribution_area"]["0.5"]["area_ratio"]
        title = f"{name} (random weights)" if summaries[name].get("random_weights") else name
        ax.set_title(f"{title}\narea@50% = {half:.1%}" if half is not None else title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    cbar = fig.colorbar(im, ax=list(axes[0]), fraction=0.025, pad=0.02)
    cbar.set_label("log10(1 + |grad|), max = 1", fontsize=8)
    fig.suptitle("Effective receptive field: |d centre output / d input|", fontsize=10)
    return fig
