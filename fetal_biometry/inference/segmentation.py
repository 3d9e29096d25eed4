"""Dense class maps from the segmenter: one U-Net pass over a whole scan.

:class:`Segmenter` holds one net (the model folder's deploy U-Net, on Caffe or OpenCV's dnn:
:mod:`fetal_biometry.inference.backends`) and reshapes it to each scan: memory stays flat in the number and size of scans (bounded by :data:`MAX_PIXELS`). A scan
is resampled to the model's spacing with its probe (:mod:`fetal_biometry.resample`), encoded
(:mod:`fetal_biometry.scan_encoding`: gray, gray + direction planes, or the probe's beam grid),
zero-padded to multiples of the U-Net's :func:`~fetal_biometry.nets.unet_multiple`, run once,
cropped, decoded back to the scan's grid at the model's spacing (scan conversion for ``beam``),
and resampled back to the scan's own grid: probabilities (K, H, W) in the order of the model's
class table, the label map their argmax as dataset label values
(:func:`fetal_biometry.labels.table_values`: what the measurements read),
:data:`~fetal_biometry.labels.OUTSIDE` outside the fan.

Split -> net -> merge is written as three small steps (:meth:`Segmenter.planes`,
:meth:`Segmenter.run`, :meth:`Segmenter.maps`).
"""
from __future__ import annotations

import numpy as np

from fetal_biometry.geometry import probe as geom
from fetal_biometry.inference import backends
from fetal_biometry.labels import SEGMENTER_CLASSES, table_values
from fetal_biometry.nets import spec as nets
from fetal_biometry.patches import encoding as patches, scan_encoding

#: Largest encoded scan (pixels at the model's spacing) run in one pass: a 8-channel U-Net at
#: 2048 x 2048 holds about 1.5 GB of blobs.
MAX_PIXELS = 2048 * 2048


class Segmenter:
    """A trained segmenter applied to whole scans.

    Parameters
    ----------
    deploy, weights : path
        The deploy U-Net (:func:`fetal_biometry.nets.segmenter_deploy`) and its ``.caffemodel``.
    encoding : {'none', 'channels', 'beam'}
    spacing_mm : float
        The model's spacing (mm per pixel): scans are resampled to it.
    depth : int
        The U-Net's poolings: input sides are padded to multiples of ``2 ** depth``.
    scale : float
        Input normalisation (uint8 planes times ``scale``).
    backend : {'caffe', 'opencv'}
        What runs the net.
    classes : tuple of str
        The class table the net learnt (output ``i`` is class ``i``; its model folder records it).
    """

    def __init__(self, deploy, weights, encoding: str, spacing_mm: float, depth: int = nets.UNET_DEPTH,
                 scale: float = patches.INPUT_SCALE, backend: str = "caffe",
                 classes: tuple[str, ...] = SEGMENTER_CLASSES):
        from fetal_biometry.inference.dense import input_dims

        scan_encoding.check(encoding)
        self.net = backends.open_net(deploy, weights, backend)
        self.encoding, self.spacing_mm, self.scale = encoding, spacing_mm, scale
        self.multiple = nets.unet_multiple(depth)
        self.channels = input_dims(deploy)[1]
        # One smallest pass tells the classes, whichever backend runs the net.
        self.classes = self.net.run(np.zeros((1, self.channels, self.multiple, self.multiple),
                                             np.float32)).shape[1]
        if self.classes != len(classes):
            raise ValueError(f"{deploy}: the net gives {self.classes} classes, its table {len(classes)}")
        self.values = table_values(classes)  # output index -> dataset label value
        #: A segmenter of the head and femur too: its maps are measured by their plane type.
        self.panel = bool({"skull", "femur"} & set(classes))
        if self.channels != scan_encoding.channels(encoding):
            raise ValueError(f"{deploy}: the net takes {self.channels} input channel(s), but the "
                             f"{encoding!r} encoding gives {scan_encoding.channels(encoding)}")

    @classmethod
    def from_model(cls, model, backend: str = "caffe") -> "Segmenter":
        """The segmenter of a model folder (:func:`fetal_biometry.model.load`, kind segmenter)."""
        return cls(model.deploy, model.weights, model.encoding, model.spacing_mm,
                   model.unet["depth"], model.scale, backend, model.classes)

    def check_size(self, shape: tuple[int, int], spacing_mm: float | None = None) -> None:
        """Refuse a scan of ``shape`` (H, W) at the model's spacing over :data:`MAX_PIXELS`."""
        if shape[0] * shape[1] > MAX_PIXELS:
            given = "" if spacing_mm is None else f" (from a spacing of {spacing_mm:g} mm per pixel)"
            raise ValueError(f"scan of {shape[1]}x{shape[0]} px at the model's spacing{given} exceeds "
                             f"the limit of {MAX_PIXELS / 1e6:.1f} megapixels; crop it, or check the spacing")

    def plan(self, probe: geom.Geometry, shape: tuple[int, int]) -> "_Plan":
        """What :class:`fetal_biometry.inference.dense.SequenceClassifier` runs over frames of
        ``shape`` with ``probe`` (both at the model's spacing); ValueError without a probe: every
        encoding of the segmenter needs the fan."""
        if probe is None:
            raise ValueError("no fan found, and the segmenter needs the probe geometry (its fan "
                             "and beams): pass --geometry FILE or --accept-fan-below C")
        return _Plan(self, probe, tuple(shape))

    def planes(self, image: np.ndarray, probe: geom.Geometry) -> np.ndarray:
        """Encoded input planes (C, h, w) uint8 of a scan already at the model's spacing."""
        planes = scan_encoding.encode(image, self.encoding, probe)
        if planes[0].size > MAX_PIXELS:
            raise ValueError(f"scan of {planes.shape[2]}x{planes.shape[1]} px at the model's spacing "
                             f"exceeds the limit of {MAX_PIXELS / 1e6:.1f} megapixels; crop it")
        return planes

    def run(self, planes: np.ndarray) -> np.ndarray:
        """Class probabilities (K, h, w) float32 of encoded planes: one padded pass of the net."""
        height, width = planes.shape[1:]
        padded = [-(-side // self.multiple) * self.multiple for side in (height, width)]
        data = np.zeros((1, self.channels, *padded), np.float32)
        data[0, :, :height, :width] = planes * self.scale
        return self.net.run(data)[0, :, :height, :width]

    def maps(self, probs: np.ndarray, probe: geom.Geometry, shape: tuple[int, int]) -> np.ndarray:
        """Probabilities on the encoded grid back on the (H, W) grid of the scan at the model's spacing."""
        return scan_encoding.decode(probs, self.encoding, probe, shape)

    def classify_scan(self, image: np.ndarray, probe: geom.Geometry,
                     spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (K, H, W) and label map (H, W) of a scan on its own grid.

        ``spacing_mm`` is the scan's own spacing; ``probe`` its geometry on its own grid
        (ValueError when there is none: every encoding of the segmenter needs the fan).
        """
        from fetal_biometry.inference.dense import SequenceClassifier

        return next(SequenceClassifier(self, probe, image.shape, spacing_mm, 1).classify([image]))


class _Plan:
    """Frames of one probe and size at the model's spacing: encode, one padded pass, decode."""

    def __init__(self, segmenter: Segmenter, probe: geom.Geometry, shape: tuple[int, int]):
        self.segmenter, self.probe, self.shape = segmenter, probe, shape

    def run(self, grays: list[np.ndarray]) -> list[np.ndarray]:
        s = self.segmenter
        return [s.maps(s.run(s.planes(gray, self.probe)), self.probe, self.shape) for gray in grays]
