"""Dense class maps over whole scans: Caffe net surgery on the patch classifier.

The patch classifier (:func:`fetal_biometry.nets.patch_classifier_deploy`) ends in two inner
products. Turned into convolutions (``f5`` as a conv whose kernel covers the whole ``p4`` map,
``out`` as a 1x1 conv; weights carried over unchanged) the net slides over a scan in one
forward pass and scores a patch every 4 pixels (the two 2x2 poolings). Scores on that grid are
what the patch-wise net gives for patches centred on the grid points, exactly; between grid points
the class probabilities are interpolated bilinearly.

The beam direction is applied consistently with training:

- ``channels`` and ``none``: the direction planes are images like the gray one, so a single pass
  over the encoded scan is exact;
- ``rotate``: patches were turned so the beam runs down. Densely, the scan is cut into sectors of
  nearly equal beam angle (``angle_step`` degrees wide); each sector is scored by one pass over the
  whole scan rotated by its mean angle, so every pixel is classified in a frame within half a step
  of its own beam direction.
"""
from __future__ import annotations

import json
import math
import pathlib
import tempfile

import cv2
import numpy as np
from scipy import ndimage

from fetal_biometry import nets, patches
from fetal_biometry.caffe_env import caffe
from fetal_biometry.labels import CLASSIFIER_CLASSES, OUTSIDE

STRIDE = 4  # two 2x2 poolings


def fully_convolutional(channels: int, height: int, width: int, patch: int = patches.SIZE,
                        classes: int = len(CLASSIFIER_CLASSES)):
    """The patch classifier as a fully convolutional net over a (channels, height, width) input."""
    param = nets.patch_classifier_deploy(channels, patch, classes)
    param.layer[0].input_param.shape[0].dim[:] = [1, channels, height, width]
    pooled = (patch - 4) // 2
    pooled = (pooled - 4) // 2  # spatial size of p4 for one patch
    for layer in param.layer:
        if layer.type == "InnerProduct":
            num_output = layer.inner_product_param.num_output
            fillers = (layer.inner_product_param.weight_filler, layer.inner_product_param.bias_filler)
            layer.type = "Convolution"
            layer.ClearField("inner_product_param")
            conv = layer.convolution_param
            conv.num_output = num_output
            conv.kernel_size.append(pooled if layer.name == "f5" else 1)
            conv.weight_filler.CopyFrom(fillers[0])
            conv.bias_filler.CopyFrom(fillers[1])
        if layer.type == "Softmax":
            layer.softmax_param.axis = 1
    return param


def transplant(source, target) -> None:
    """Copy weights from the patch net into its fully convolutional twin (same values, new shapes)."""
    for name, blobs in source.params.items():
        for src, dst in zip(blobs, target.params[name]):
            dst.data[...] = src.data.reshape(dst.data.shape)


class DenseClassifier:
    """A trained patch classifier applied densely to scans of any size.

    Parameters
    ----------
    deploy, weights : path
        The patch classifier's deploy prototxt and trained ``.caffemodel``.
    encoding : {'rotate', 'channels', 'none'}
        The beam encoding the net was trained with.
    mean : sequence of float, optional
        Per-channel mean the net was trained with (Caffe's ``mean_value``, subtracted before
        the 1/256 scale).
    """

    def __init__(self, deploy, weights, encoding: str, mean=None, angle_step: float = 10.0):
        self.encoding, self.angle_step = encoding, angle_step
        self.patch_net = caffe().Net(str(deploy), str(weights), caffe().TEST)
        self.channels, self.patch = self.patch_net.blobs["data"].data.shape[1:3]
        self.classes = self.patch_net.blobs["prob"].data.shape[1]
        self.half = self.patch // 2
        self.mean = np.zeros(self.channels, np.float32) if mean is None else np.asarray(mean, np.float32)
        self._nets: dict[tuple[int, int], object] = {}

    def _net(self, shape: tuple[int, int]):
        """The fully convolutional twin for scans of ``shape``, built once per size."""
        if shape not in self._nets:
            # Pad so that the first grid point is pixel (0, 0) and the last covers the far border.
            height, width = (math.ceil(s / STRIDE) * STRIDE + self.patch - STRIDE for s in shape)
            fcn = fully_convolutional(self.channels, height, width, self.patch, self.classes)
            # pycaffe builds nets from files only; a temporary one keeps read-only installs working.
            with tempfile.TemporaryDirectory() as folder:
                net = caffe().Net(str(nets.save(fcn, pathlib.Path(folder, "fcn.prototxt"))),
                                  caffe().TEST)
            transplant(self.patch_net, net)
            self._nets[shape] = net
        return self._nets[shape]

    def _grid_probabilities(self, planes: np.ndarray) -> np.ndarray:
        """Class probabilities of the patches centred on every 4th pixel: (K, h/4, w/4)."""
        net = self._net(planes.shape[1:])
        _, height, width = net.blobs["data"].data.shape[1:]
        padded = np.zeros((planes.shape[0], height, width), np.float32)
        padded[:, self.half:self.half + planes.shape[1], self.half:self.half + planes.shape[2]] = planes
        # Zero padding before the mean, as extract() pads patches before Caffe subtracts it.
        padded = (padded - self.mean[:, None, None]) / 256.0
        net.blobs["data"].data[0] = padded
        return net.forward()["prob"][0].copy()

    @staticmethod
    def _upsample(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        ys, xs = np.mgrid[0:shape[0], 0:shape[1]] / STRIDE
        return np.stack([ndimage.map_coordinates(g, [ys, xs], order=1, mode="nearest")
                         for g in grid])

    def probabilities(self, image: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Per-class probability maps (K, H, W) of one scan; zero outside the fan."""
        planes = patches.encode(image, directions, self.encoding).astype(np.float32)
        if self.encoding != "rotate":
            probs = self._upsample(self._grid_probabilities(planes), image.shape)
        else:
            probs = self._rotated(planes[0], directions)
        probs[:, np.isnan(directions[..., 0])] = 0
        return probs

    def _rotated(self, gray: np.ndarray, directions: np.ndarray) -> np.ndarray:
        angles = np.degrees(np.arctan2(-directions[..., 0], directions[..., 1]))  # 0 = straight down
        inside = ~np.isnan(angles)
        bins = np.round(np.where(inside, angles, 0) / self.angle_step).astype(int)
        shape = gray.shape
        probs = np.zeros((self.classes, *shape), np.float32)
        centre = ((shape[1] - 1) / 2, (shape[0] - 1) / 2)
        for b in np.unique(bins[inside]):
            members = inside & (bins == b)
            angle = float(angles[members].mean())
            # Rotate the scan so this sector's beam runs down, classify, rotate the maps back.
            forward = cv2.getRotationMatrix2D(centre, angle, 1.0)
            turned = cv2.warpAffine(gray, forward, shape[::-1], flags=cv2.INTER_LINEAR)
            maps = self._upsample(self._grid_probabilities(turned[None]), shape)
            back = cv2.invertAffineTransform(forward)
            for k, m in enumerate(maps):
                restored = cv2.warpAffine(m, back, shape[::-1], flags=cv2.INTER_LINEAR)
                probs[k][members] = restored[members]
        return probs

    def classify(self, image: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probability maps and the label map (argmax; 255 outside the fan)."""
        probs = self.probabilities(image, directions)
        labels = probs.argmax(axis=0).astype(np.uint8)
        labels[np.isnan(directions[..., 0])] = OUTSIDE
        return probs, labels


def infer_scan(classifier: DenseClassifier, image: np.ndarray, directions: np.ndarray,
               spacing_mm: float | None, out: str | pathlib.Path, stem: str) -> dict:
    """Classify one scan, measure it when the spacing is known, and write its outputs.

    Writes ``OUT/STEM_probs.npy`` (K, H, W float16), ``STEM_labels.png`` (classes, 255 outside
    the fan), ``STEM_overlay.png`` (classes over the scan, with the ellipse and AC when
    measured) and returns the measurement record (also written as ``STEM.json``).
    """
    from fetal_biometry import atomic, biometry, figures

    out = pathlib.Path(out)
    probs, labels = classifier.classify(image, directions)
    record: dict = {"scan": stem, "encoding": classifier.encoding}
    picture = figures.class_overlay(image, labels)
    if spacing_mm is not None:
        measured = biometry.measure(labels, spacing_mm)
        picture = np.hstack([picture, figures.draw_measurement(image, measured)])
        e = measured.ellipse
        record.update(ac_mm=measured.ac_mm, plane_acceptable=measured.accepted,
                      reasons=list(measured.reasons), spacing_mm=spacing_mm,
                      ellipse=None if e is None else {"center": [e.cx, e.cy],
                                                      "semi_axes": [e.a, e.b], "angle_deg": e.angle})
    with atomic.staged_file(out / f"{stem}_probs.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, probs.astype(np.float16))
    atomic.write_bytes(out / f"{stem}_labels.png", figures.png(labels))
    atomic.write_bytes(out / f"{stem}_overlay.png", figures.png(picture))
    atomic.write_text(out / f"{stem}.json", json.dumps(record, indent=1) + "\n")
    return record
