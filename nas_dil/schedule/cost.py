"""Analytic cost of convolutions and dilated stacks: no tracing, no torch.

Convention, written down once for the whole project:
- ``macs``: multiply-accumulates of convolution and linear layers.
- ``flops``: 2 × macs (one multiply-add = 2 FLOPs), the convention of
  ``torch.utils.flop_counter.FlopCounterMode``. Biases, norms, activations, residual adds
  and up-sampling are not counted: they are O(H·W·C), not O(H·W·C²·K²).
- ``params``: trainable parameters (conv weights and biases, norm affine weights);
  running statistics are buffers, not parameters.
Dilation changes neither MACs nor parameters; resolution (output stride) does.
"""

from __future__ import annotations

from dataclasses import dataclass

from nas_dil.schedule.types import Schedule

__all__ = ["Cost", "conv_cost", "conv_out_size", "stack_cost"]


@dataclass(frozen=True)
class Cost:
    macs: int  # multiply-accumulates for one image
    params: int  # trainable parameters

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.params + other.params)


ZERO = Cost(0, 0)


def conv_out_size(size: int, kernel: int, stride: int = 1, dilation: int = 1,
                  padding: int | None = None) -> int:
    """Output length of a conv along one axis (padding defaults to 'same' for odd K)."""
    if padding is None:
        padding = dilation * (kernel - 1) // 2
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_cost(h_out: int, w_out: int, c_in: int, c_out: int, kernel: int,
              bias: bool = False, norm: bool = False, groups: int = 1) -> Cost:
    """One K×K conv producing an h_out×w_out×c_out map (plus an optional affine norm)."""
    macs = h_out * w_out * c_out * (c_in // groups) * kernel * kernel
    params = c_out * (c_in // groups) * kernel * kernel + (c_out if bias else 0)
    params += 2 * c_out if norm else 0
    return Cost(macs, params)


def stack_cost(s: Schedule, width: int, h: int, w: int, norm: bool = True,
               c_in: int | None = None) -> Cost:
    """Cost of the dilated stack: per layer a K×K conv (width→width), 'same' padding,
    followed by a norm (conv without bias) or a bias (no norm), on an h×w input."""
    total = ZERO
    c = width if c_in is None else c_in
    for r, k, st in zip(s.rates, s.kernels, s.strides, strict=True):
        h = conv_out_size(h, k, st, r)
        w = conv_out_size(w, k, st, r)
        total = total + conv_cost(h, w, c, width, k, bias=not norm, norm=norm)
        c = width
    return total
