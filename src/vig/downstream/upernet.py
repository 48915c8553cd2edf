"""UperNet (Xiao et al. 2018) in plain PyTorch: a pyramid pooling module on the last map, an FPN over all
four, the four FPN outputs upsampled to stride 4 and fused; plus the usual auxiliary FCN head on stride 16.
`Segmentor` = DenseBackbone + UperNet head, logits at the input size."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu(cin, cout, k):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class PPM(nn.Module):
    def __init__(self, cin, ch, scales=(1, 2, 3, 6)):
        super().__init__()
        self.stages = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_bn_relu(cin, ch, 1))
                                    for s in scales)
        self.bottleneck = conv_bn_relu(cin + len(scales) * ch, ch, 3)

    def forward(self, x):
        size = x.shape[-2:]
        outs = [x] + [F.interpolate(s(x), size, mode="bilinear", align_corners=False) for s in self.stages]
        return self.bottleneck(torch.cat(outs, 1))


class UperHead(nn.Module):
    def __init__(self, in_channels, num_classes, channels=512, dropout=0.1, pool_scales=(1, 2, 3, 6)):
        super().__init__()
        self.ppm = PPM(in_channels[-1], channels, pool_scales)
        self.lateral = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in in_channels[:-1])
        self.fpn_out = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in in_channels[:-1])
        self.fuse = conv_bn_relu(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.cls = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats):
        lat = [l(f) for l, f in zip(self.lateral, feats[:-1])] + [self.ppm(feats[-1])]
        for i in range(len(lat) - 1, 0, -1):  # top-down pathway
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], lat[i - 1].shape[-2:], mode="bilinear",
                                                    align_corners=False)
        outs = [conv(x) for conv, x in zip(self.fpn_out, lat[:-1])] + [lat[-1]]
        size = outs[0].shape[-2:]
        outs = [outs[0]] + [F.interpolate(o, size, mode="bilinear", align_corners=False) for o in outs[1:]]
        return self.cls(self.dropout(self.fuse(torch.cat(outs, 1))))


class FCNHead(nn.Module):
    """Auxiliary head (training only): one 3x3 conv block then a classifier."""

    def __init__(self, cin, num_classes, channels=256, dropout=0.1):
        super().__init__()
        self.conv = conv_bn_relu(cin, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.cls = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x):
        return self.cls(self.dropout(self.conv(x)))


class Segmentor(nn.Module):
    """forward(x) -> logits [B, K, H, W] (eval) or (logits, aux_logits) in training when aux is on."""

    def __init__(self, backbone, num_classes, channels=512, aux_channels=256, aux_weight=0.4):
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.head = UperHead(backbone.channels, num_classes, channels)
        self.aux_weight = aux_weight
        self.aux = FCNHead(backbone.channels[2], num_classes, aux_channels) if aux_weight > 0 else None

    def forward(self, x):
        h, w = x.shape[-2:]
        feats = list(self.backbone(x).values())
        hp, wp = feats[0].shape[-2] * 4, feats[0].shape[-1] * 4  # the backbone pads to a multiple of 32

        def up(logits):
            return F.interpolate(logits, (hp, wp), mode="bilinear", align_corners=False)[..., :h, :w]

        logits = up(self.head(feats))
        if self.training and self.aux is not None:
            return logits, up(self.aux(feats[2]))
        return logits


@torch.no_grad()
def slide_inference(model, img, num_classes, crop=512, stride=341):
    """Average softmax-free logits of overlapping crop x crop windows (mmseg 'slide' mode).
    img: [B,3,H,W]; returns logits [B,K,H,W]. Images smaller than the crop are run whole."""
    b, _, h, w = img.shape
    if h <= crop and w <= crop:
        return model(img)
    out = img.new_zeros((b, num_classes, h, w))
    count = img.new_zeros((b, 1, h, w))
    rows = max(h - crop + stride - 1, 0) // stride + 1
    cols = max(w - crop + stride - 1, 0) // stride + 1
    for r in range(rows):
        for c in range(cols):
            y1, x1 = r * stride, c * stride
            y2, x2 = min(y1 + crop, h), min(x1 + crop, w)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            out[:, :, y1:y2, x1:x2] += model(img[:, :, y1:y2, x1:x2]).float()
            count[:, :, y1:y2, x1:x2] += 1
    return out / count
