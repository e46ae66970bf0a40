"""SimpleFPN neck: one ViT map -> a pyramid of d_model maps with sine position encodings."""

from __future__ import annotations

from torch import Tensor, nn

from .common import SinePositionCache


def _branch(in_dim: int, d_model: int, scale: float) -> nn.Sequential:
    """One pyramid level. Module names match the official checkpoint (``dconv_2x2_0`` ...)."""
    m = nn.Sequential()
    if scale == 4.0:
        m.add_module("dconv_2x2_0", nn.ConvTranspose2d(in_dim, in_dim // 2, 2, stride=2))
        m.add_module("gelu", nn.GELU())
        m.add_module("dconv_2x2_1", nn.ConvTranspose2d(in_dim // 2, in_dim // 4, 2, stride=2))
        out = in_dim // 4
    elif scale == 2.0:
        m.add_module("dconv_2x2", nn.ConvTranspose2d(in_dim, in_dim // 2, 2, stride=2))
        out = in_dim // 2
    elif scale == 1.0:
        out = in_dim
    elif scale == 0.5:
        m.add_module("maxpool_2x2", nn.MaxPool2d(2, 2))
        out = in_dim
    else:
        raise ValueError(f"unsupported FPN scale {scale}")
    m.add_module("conv_1x1", nn.Conv2d(out, d_model, 1))
    m.add_module("conv_3x3", nn.Conv2d(d_model, d_model, 3, padding=1))
    return m


class VisionBackbone(nn.Module):
    """ViT trunk + SimpleFPN neck.

    images B x 3 x S x S -> (levels, positions), each a list of B x d x (s*g) x (s*g), highest
    resolution first (g = S / patch). The last ``scalp`` levels are built (they are in the
    checkpoint) but not computed, since the model never uses them.
    """

    def __init__(self, trunk: nn.Module, in_dim: int, d_model: int, scales: tuple[float, ...],
                 scalp: int = 0):
        super().__init__()
        self.trunk = trunk
        self.convs = nn.ModuleList(_branch(in_dim, d_model, s) for s in scales)
        self.num_used = len(scales) - scalp
        self.d_model = d_model
        self.position = SinePositionCache(self.d_model)  # (h, w, like) -> dim x h x w

    def forward(self, images: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        return self.fpn(self.trunk(images))

    def fpn(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The pyramid of a trunk output x (B x C x g x g); lets the video model run the trunk
        once and feed both this neck and the tracker's."""
        levels, pos = [], []
        for conv in self.convs[: self.num_used]:
            y = conv(x)
            levels.append(y)
            pos.append(self.position(y.shape[-2], y.shape[-1], y)[None].expand(y.shape[0], -1, -1, -1))
        return levels, pos
