"""UperNet's wiring and sliding-window inference, checked on stub backbones and models whose outputs are known: the
FPN's top-down path, the auxiliary head's feature level, the stride-4 logits' alignment with the pixels, and the
windows slide_inference runs (mmseg 'slide': full crop-sized windows, the last one shifted back inside)."""
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vig.downstream.segmentation import unwrap_loss
from vig.downstream.upernet import Segmentor, UperHead, slide_inference

CH = [4, 8, 16, 16]  # a plain ViG's pyramid: the stride-16 and stride-32 maps have the same width


class StubBackbone(nn.Module):
    """Maps at strides 4/8/16/32 of the input padded to a multiple of 32, as DenseBackbone returns them."""
    channels = CH

    def forward(self, x):
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % 32, 0, (-h) % 32))
        return OrderedDict((str(i), F.avg_pool2d(x, s).mean(1, keepdim=True).repeat(1, c, 1, 1) * (i + 1))
                           for i, (s, c) in enumerate(zip((4, 8, 16, 32), CH)))


def _feats(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, c, 32 // s, 48 // s, generator=g) for s, c in zip((1, 2, 4, 8), CH)]


@pytest.mark.parametrize("level", [0, 1])
def test_top_down_path_carries_the_deepest_map_to_every_fpn_level(level):
    torch.manual_seed(0)
    head = UperHead(CH, 3, channels=8).eval()
    seen = []
    head.fpn_out[level].register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    feats = _feats()
    with torch.no_grad():
        head(feats)
        feats[-1] = feats[-1] + 1.0  # only the stride-32 map (PPM input) changes
        head(feats)
    # the lateral of this level adds the upsampled coarser levels, so it sees the change (a missing or
    # bottom-up pathway leaves the finer levels blind to it)
    assert (seen[0] - seen[1]).abs().max() > 1e-3


def test_aux_head_reads_the_stride_16_map():
    torch.manual_seed(0)
    seg = Segmentor(StubBackbone(), 3, channels=8, aux_channels=4).train()
    shapes = []
    seg.aux.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape[-2:])))
    logits, aux = seg(torch.randn(2, 3, 64, 96))
    assert shapes == [(4, 6)]  # 64x96 / 16, not the stride-32 map of the same width
    assert logits.shape == aux.shape == (2, 3, 64, 96)


class Ramp(nn.Module):
    """Head stand-in: channel 0 is the column index and channel 1 the row index of the stride-4 map."""

    def forward(self, feats):
        b, _, h, w = feats[0].shape
        cols = torch.arange(w, dtype=torch.float32).expand(b, 1, h, w)
        rows = torch.arange(h, dtype=torch.float32)[:, None].expand(b, 1, h, w)
        return torch.cat([cols, rows], 1)


def test_logits_are_the_stride_4_map_upsampled_onto_the_pixels():
    seg = Segmentor(StubBackbone(), 2, channels=8, aux_weight=0).eval()
    seg.head = Ramp()
    h, w = 50, 70  # padded to 64x96 inside the backbone, cropped back
    with torch.no_grad():
        out = seg(torch.randn(1, 3, h, w))
    assert out.shape == (1, 2, h, w)
    # bilinear x4, align_corners=False: pixel p sits at (p + 0.5) / 4 - 0.5 on the stride-4 grid (exact for p >= 2;
    # the first two pixels clamp to cell 0)
    want_x = (torch.arange(2, w, dtype=torch.float64) + 0.5) / 4 - 0.5
    want_y = (torch.arange(2, h, dtype=torch.float64) + 0.5) / 4 - 0.5
    torch.testing.assert_close(out[0, 0, 10, 2:].double(), want_x, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, 1, 2:, 10].double(), want_y, atol=1e-5, rtol=0)


class WindowRecorder(nn.Module):
    """Logs (y1, x1, height, width) of every window from a coordinate-coded input; returns K=2 zero logits."""

    def __init__(self):
        super().__init__()
        self.windows = []

    def forward(self, x):
        self.windows.append((int(x[0, 0, 0, 0]), int(x[0, 1, 0, 0]), x.shape[-2], x.shape[-1]))
        return x.new_zeros(x.shape[0], 2, *x.shape[-2:])


def _coords(h, w):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    return torch.stack([ys, xs, ys])[None]


def test_slide_windows_are_full_crops_shifted_back_inside():
    rec = WindowRecorder()
    slide_inference(rec, _coords(40, 90), 2, crop=32, stride=21)
    # rows: starts 0, 21 -> the second ends at 40, shifted back to 8; columns: 0, 21, 42, 63 -> the last to 58
    want = {(y, x, 32, 32) for y in (0, 8) for x in (0, 21, 42, 58)}
    assert len(rec.windows) == 8 and set(rec.windows) == want


def test_an_image_wider_than_the_crop_is_slid_even_when_it_is_short():
    rec = WindowRecorder()
    slide_inference(rec, _coords(24, 60), 2, crop=32, stride=21)
    # one row (the image is shorter than the crop), columns 0, 21, 42 -> 28: never the whole 60 px width at once
    assert sorted(rec.windows) == [(0, 0, 24, 32), (0, 21, 24, 32), (0, 28, 24, 32)]


class Fixed(nn.Module):
    def __init__(self, logits, aux, aux_weight):
        super().__init__()
        self.logits, self.aux, self.aux_weight = logits, aux, aux_weight

    def forward(self, x):
        return self.logits, self.aux


def _ce_float64(logits, label):
    """Mean negative log-likelihood over the pixels whose label is not 255, by hand in float64."""
    logp = logits.double().log_softmax(1)
    keep = label != 255
    picked = logp.permute(0, 2, 3, 1)[keep]  # [N, K]
    return -picked[torch.arange(len(picked)), label[keep]].mean()


def test_seg_loss_skips_ignored_pixels_and_weights_the_aux_head():
    g = torch.Generator().manual_seed(0)
    logits, aux = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    label = torch.randint(0, 3, (2, 4, 5), generator=g)
    label[:, :2, :] = 255  # 40% of the pixels ignored
    loss, parts = unwrap_loss(Fixed(logits, aux, 0.4), None, label)
    seg, aux_ce = _ce_float64(logits, label), _ce_float64(aux, label)
    torch.testing.assert_close(parts["loss_seg"].double(), seg, atol=1e-6, rtol=0)
    torch.testing.assert_close(parts["loss_aux"].double(), aux_ce, atol=1e-6, rtol=0)
    torch.testing.assert_close(loss.double(), seg + 0.4 * aux_ce, atol=1e-6, rtol=0)
