"""Linear2d: an nn.Linear run as a 1x1 conv on NCHW, weight stored 2-D (out, in) as in ViG-H."""
import torch.nn as nn
import torch.nn.functional as F


class Linear2d(nn.Linear):
    def forward(self, x):
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)
