"""The input sizes a net can take: the element count of every blob Caffe would set up, computed
from the layer parameters without Caffe, so that a scan too large for a net is refused before
Caffe aborts on ``blob size exceeds INT_MAX`` (a convolution's im2col buffer counts too).
"""
from __future__ import annotations

import math
import os

from fetal_biometry.caffe_env import proto
from fetal_biometry.nets.checks import INT_MAX, CheckError, check_net_file

_SAME_SHAPE = {"ReLU", "PReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "Power", "Exp", "Log",
               "BNLL", "Dropout", "BatchNorm", "Scale", "Bias", "Softmax", "Split", "Eltwise",
               "LRN", "MVN", "Threshold", "Silence"}


def blob_counts(net, input_shape) -> dict[str, int]:
    """Element counts of the blobs Caffe sets up for ``net`` with its first input ``input_shape``.

    ``net`` is a NetParameter or a prototxt path. Computed from the layer parameters with
    Caffe's shape rules (nothing is built or allocated); internal buffers are included, e.g.
    ``'c3 (im2col buffer)'``. Layer types sized: Input, Convolution, Pooling, InnerProduct,
    Flatten, Concat and the element-wise ones.
    """
    param = check_net_file(net) if isinstance(net, (str, os.PathLike)) else net
    shapes: dict[str, tuple[int, ...]] = {}
    counts: dict[str, int] = {}
    first = True
    for name, shape in zip(param.input, param.input_shape):  # legacy net-level inputs
        shapes[name] = tuple(input_shape) if first else tuple(shape.dim)
        first = False
    for layer in param.layer:
        if any(rule.HasField("phase") and rule.phase == proto().TRAIN for rule in layer.include):
            continue
        bottoms = [shapes[b] for b in layer.bottom]
        if layer.type == "Input":
            tops = [tuple(input_shape) if first and i == 0 else tuple(s.dim)
                    for i, s in enumerate(layer.input_param.shape)]
            first = False
        else:
            tops, internal = _layer_shapes(layer, bottoms)
            counts.update({f"{layer.name} ({k})": v for k, v in internal.items()})
        for top, shape in zip(layer.top, tops):
            shapes[top] = shape
            counts[top] = max(counts.get(top, 0), math.prod(shape))
    return counts


def _layer_shapes(layer, bottoms) -> tuple[list[tuple[int, ...]], dict[str, int]]:
    """Top shapes and internal buffer sizes of one layer."""
    bottom = bottoms[0] if bottoms else ()
    if layer.type == "Convolution":
        p = layer.convolution_param
        spatial = bottom[2:]
        kernel = _per_axis(p.kernel_size, p.kernel_h, p.kernel_w, len(spatial), None)
        stride = _per_axis(p.stride, p.stride_h, p.stride_w, len(spatial), 1)
        pad = _per_axis(p.pad, p.pad_h, p.pad_w, len(spatial), 0)
        dilation = _per_axis(p.dilation, 0, 0, len(spatial), 1)
        out = [_trunc_div(n + 2 * q - (d * (k - 1) + 1), s) + 1
               for n, k, s, q, d in zip(spatial, kernel, stride, pad, dilation)]
        return [(bottom[0], p.num_output, *out)], {"im2col buffer": bottom[1] * math.prod(kernel) * math.prod(out)}
    if layer.type == "Pooling":
        p = layer.pooling_param
        height, width = bottom[2:]
        kh, kw = (height, width) if p.global_pooling else (p.kernel_h or p.kernel_size, p.kernel_w or p.kernel_size)
        sh, sw = p.stride_h or p.stride, p.stride_w or p.stride
        ph, pw = p.pad_h or p.pad, p.pad_w or p.pad
        rounding = math.floor if p.round_mode == p.FLOOR else math.ceil
        out = []
        for n, k, s, q in ((height, kh, sh, ph), (width, kw, sw, pw)):
            size = int(rounding((n + 2 * q - k) / s)) + 1
            out.append(size - 1 if q and (size - 1) * s >= n + q else size)
        top = (bottom[0], bottom[1], *out)
        return [top], {"pooling index": math.prod(top)} if p.pool == p.MAX else {}
    if layer.type == "InnerProduct":
        axis = layer.inner_product_param.axis % len(bottom)
        return [(*bottom[:axis], layer.inner_product_param.num_output)], {}
    if layer.type == "Flatten":
        return [(bottom[0], math.prod(bottom[1:]))], {}
    if layer.type == "Concat":
        axis = layer.concat_param.axis % len(bottom)
        return [(*bottom[:axis], sum(b[axis] for b in bottoms), *bottom[axis + 1:])], {}
    if layer.type in _SAME_SHAPE:
        return [bottom] * len(layer.top), {}
    raise CheckError(f"layer {layer.name!r}: cannot size a {layer.type} layer; blob_counts "
                     f"knows {', '.join(sorted(_SAME_SHAPE | {'Convolution', 'Pooling', 'InnerProduct', 'Flatten', 'Concat', 'Input'}))}")


def _per_axis(values, h: int, w: int, axes: int, default: int | None) -> list[int]:
    if h or w:
        return [h, w]
    values = list(values)
    if not values:
        return [default] * axes
    return values * axes if len(values) == 1 else values


def _trunc_div(a: int, b: int) -> int:
    # C++ integer division truncates towards zero (Python's // floors).
    return abs(a) // b * (1 if a >= 0 else -1)


def largest_input(net, shape) -> int:
    """The largest side ``s`` for which ``net`` takes an input (N, C, s, s) (N, C from ``shape``)."""
    low, high = 1, 1 << 17
    while low < high:
        side = (low + high + 1) // 2
        if max(blob_counts(net, (*shape[:2], side, side)).values()) <= INT_MAX:
            low = side
        else:
            high = side - 1
    return low


def check_input_size(shape, net) -> None:
    """Refuse an input ``shape`` (N, C, H, W) for which a blob of ``net`` exceeds ``INT_MAX``.

    Caffe aborts (``blob size exceeds INT_MAX``) where a blob, or a convolution's im2col
    buffer, would hold more than 2^31 - 1 values; the message here gives the largest square
    input the net takes, so that the caller can tile or work at a coarser spacing.
    """
    counts = blob_counts(net, shape)
    name, count = max(counts.items(), key=lambda item: item[1])
    if count > INT_MAX:
        side = largest_input(net, shape)
        raise CheckError(f"input {'x'.join(map(str, shape))} is too large for Caffe: blob {name!r} "
                         f"would hold {count:,} values, over Caffe's limit of {INT_MAX:,} per blob; "
                         f"this net takes inputs up to {side}x{side} pixels: tile the scan or "
                         "work at a coarser spacing")
