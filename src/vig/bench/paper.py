"""Numbers published in the ViG paper (Table 1, RTX 4090, batch 256, 224²), used only as labelled
reference points in plots; nothing here is a measurement of ours."""

# model name -> (label, ImageNet-1K top-1 %, paper throughput img/s on an RTX 4090, paper GFLOPs)
PUBLISHED = {
    "vig_tiny": ("ViG-T", 77.2, 4645, 0.9),
    "vig_small": ("ViG-S", 81.7, 1886, 3.5),
    "vig_base": ("ViG-B", 82.6, 701, 13.8),
    "vig_h_tiny": ("ViG-H-T", 82.8, 1480, 4.5),
    "vig_h_small": ("ViG-H-S", 83.8, 890, 8.8),
    "vig_h_base": ("ViG-H-B", 84.2, 621, 15.5),
    "deit_tiny_patch16_224": ("DeiT-T", 72.2, 5761, 1.3),
    "deit_small_patch16_224": ("DeiT-S", 79.8, 2396, 4.6),
    "deit_base_patch16_224": ("DeiT-B", 81.8, 837, 17.6),
}

# Fig. 4 of the paper plots 224, 512, 640, 768, 1024, 1280, 1640, 2048. 1640 is not a multiple of the
# patch size 16 (DeiT would crop it), so we use 1536 in its place.
FIG4_RESOLUTIONS = (224, 512, 640, 768, 1024, 1280, 1536, 2048)

# Table 3, last row: the fused bidirectional implementation against the direct two-pass form.
TABLE3_FUSED_GAIN = {"throughput_pct": +21.9, "memory_pct": -13.3}


def label(model_name):
    return PUBLISHED.get(model_name, (model_name,))[0]


def top1(model_name):
    entry = PUBLISHED.get(model_name)
    return None if entry is None else entry[1]
