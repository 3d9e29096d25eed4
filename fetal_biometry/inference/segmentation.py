"""Dense class maps from the segmenter: one U-Net pass over a whole scan.

:class:`Segmenter` holds one Caffe net (the model folder's deploy U-Net) and reshapes it to each
scan: memory stays flat in the number and size of scans (bounded by :data:`MAX_PIXELS`). A scan
is resampled to the model's spacing with its probe (:mod:`fetal_biometry.resample`), encoded
(:mod:`fetal_biometry.scan_encoding`: gray, gray + direction planes, or the probe's beam grid),
zero-padded to multiples of the U-Net's :func:`~fetal_biometry.nets.unet_multiple`, run once,
cropped, decoded back to the scan's grid at the model's spacing (scan conversion for ``beam``),
and resampled back to the scan's own grid: probabilities (K, H, W), the label map their argmax,
:data:`~fetal_biometry.labels.OUTSIDE` outside the fan.

Split -> net -> merge is written as three small steps (:meth:`Segmenter.planes`,
:meth:`Segmenter.run`, :meth:`Segmenter.maps`), so that a shared dense-inference engine (tiles,
batches, an OpenCV backend) can take over the middle one.
"""
from __future__ import annotations

import numpy as np

from fetal_biometry.geometry import probe as geom, resample
from fetal_biometry.nets import checks, spec as nets
from fetal_biometry.patches import encoding as patches, scan_encoding
from fetal_biometry.labels import OUTSIDE

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
    """

    def __init__(self, deploy, weights, encoding: str, spacing_mm: float, depth: int = nets.UNET_DEPTH,
                 scale: float = patches.INPUT_SCALE):
        scan_encoding.check(encoding)
        checks.check_weights(deploy, weights)  # Caffe would abort on weights of another net
        self.net = checks.net(deploy, weights)
        self.encoding, self.spacing_mm, self.scale = encoding, spacing_mm, scale
        self.multiple = nets.unet_multiple(depth)
        self.channels = self.net.blobs["data"].data.shape[1]
        self.classes = self.net.blobs["prob"].data.shape[1]
        if self.channels != scan_encoding.channels(encoding):
            raise ValueError(f"{deploy}: the net takes {self.channels} input channel(s), but the "
                             f"{encoding!r} encoding gives {scan_encoding.channels(encoding)}")

    @classmethod
    def from_model(cls, model) -> "Segmenter":
        """The segmenter of a model folder (:func:`fetal_biometry.model.load`, kind segmenter)."""
        return cls(model.deploy, model.weights, model.encoding, model.spacing_mm,
                   model.unet["depth"], model.scale)

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
        self.net.blobs["data"].reshape(1, self.channels, *padded)
        self.net.reshape()
        data = self.net.blobs["data"].data
        data[...] = 0
        data[0, :, :height, :width] = planes * self.scale
        return self.net.forward()["prob"][0, :, :height, :width].copy()

    def maps(self, probs: np.ndarray, probe: geom.Geometry, shape: tuple[int, int]) -> np.ndarray:
        """Probabilities on the encoded grid back on the (H, W) grid of the scan at the model's spacing."""
        return scan_encoding.decode(probs, self.encoding, probe, shape)

    def classify_scan(self, image: np.ndarray, probe: geom.Geometry,
                     spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (K, H, W) and label map (H, W) of a scan on its own grid.

        ``spacing_mm`` is the scan's own spacing; ``probe`` its geometry on its own grid
        (ValueError when there is none: every encoding of the segmenter needs the fan).
        """
        if probe is None:
            raise ValueError("no fan found, and the segmenter needs the probe geometry (its fan "
                             "and beams): pass --geometry FILE or --accept-fan-below C")
        scale = resample.scale_factor(spacing_mm, self.spacing_mm)
        small, small_probe = resample.image(image, scale), resample.geometry(probe, scale)
        probs = self.maps(self.run(self.planes(small, small_probe)), small_probe, small.shape)
        probs = resample.back(probs, image.shape, scale)
        outside = ~geom.fan_mask(probe, image.shape)
        probs[:, outside] = 0
        labels = probs.argmax(axis=0).astype(np.uint8)
        labels[outside] = OUTSIDE
        return probs, labels
