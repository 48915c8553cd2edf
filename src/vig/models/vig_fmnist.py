"""`vig_fmnist`: a small ViG for 28x28 grayscale images, the model behind `vig train --data default`.

In the spirit of timm's `test_*` models: the same ViG blocks as the paper variants, with a stem suited to 28x28
(patch_size 8: k5/s4 then k3/s2, 28 -> 7 -> 4x4 = 16 tokens), two blocks of width 128 and a SwiGLU hidden size
rounded to 32 (not 256), so that two epochs of Fashion-MNIST fit in minutes on a 2-core CPU. Measured on 15k-image
proxies: patch_size 4 (49 tokens) costs ~3.4x more per image; width mattered more than depth for accuracy. No pretrained weights: `vig train --data default` makes them.
"""
from timm.models import generate_default_cfgs, register_model

from vig.models.vig import ViG, create_vig

FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)  # over the 60k training images, pixels in [0, 1]

default_cfgs = generate_default_cfgs({
    "vig_fmnist.untrained": {
        "num_classes": 10, "input_size": (1, 28, 28), "pool_size": None, "crop_pct": 1.0, "crop_mode": "center",
        "interpolation": "bilinear", "fixed_input_size": False, "mean": FMNIST_MEAN, "std": FMNIST_STD,
        "first_conv": "patch_embed.proj.0", "classifier": "head", "min_input_size": (1, 8, 8),
        "notes": ("train it: vig train --data default --output runs/fmnist",),
    },
})


@register_model
def vig_fmnist(pretrained=False, **kwargs) -> ViG:
    args = dict(img_size=28, patch_size=8, in_chans=1, num_classes=10, embed_dim=128, depth=2, num_heads=4,
                mlp_hidden_multiple=32, use_act_in_conv=True, use_out_act=True, drop_path_rate=0.0)
    # features_only defaults to the plain ViGs' 4 evenly spaced blocks, but no more than there are (depth 2 -> 0, 1)
    return create_vig("vig_fmnist", pretrained, **dict(args, **kwargs))
