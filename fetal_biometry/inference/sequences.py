"""Dense class maps for every frame of a sequence of one probe geometry, :data:`BATCH` frames per
forward pass (:class:`SequenceClassifier`): the resampling, beam directions, fan and windows
are computed once for the whole sequence."""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Iterator

import cv2
import numpy as np
from scipy import ndimage

from fetal_biometry.geometry import probe as geom, resample
from fetal_biometry.inference.dense import DenseClassifier, MAX_PIXELS, STRIDE, beam_directions
from fetal_biometry.labels import OUTSIDE
from fetal_biometry.patches import encoding as patches


BATCH = 8  # frames per Caffe forward pass


@dataclasses.dataclass(frozen=True)
class _Pass:
    """One forward pass over a frame: a window of grid points, optionally on a rotated frame."""

    rows: tuple[int, int]  # grid rows [r0, r1)
    cols: tuple[int, int]
    forward: np.ndarray | None = None  # rotation (2x3) taking the frame to the pass's frame
    members: np.ndarray | None = None  # pixels (small grid) this pass classifies


class SequenceClassifier:
    """Dense class maps for every frame of a sequence of one probe geometry, in batches.

    Parameters
    ----------
    classifier : DenseClassifier
    probe : the frames' probe geometry (pixels of the frames); None: no fan, the whole frames
        are classified (encoding 'none' only)
    shape : (H, W) of the frames
    spacing_mm : the frames' pixel spacing
    batch : frames per forward pass
    """

    def __init__(self, classifier: DenseClassifier, probe: geom.Geometry | None, shape: tuple[int, int],
                 spacing_mm: float, batch: int = BATCH):
        self.classifier, self.shape, self.batch = classifier, tuple(shape), batch
        self.scale = (1.0 if classifier.spacing_mm is None
                      else resample.scale_factor(spacing_mm, classifier.spacing_mm))
        small = resample.shape(self.shape, self.scale)
        if small[0] * small[1] > MAX_PIXELS:
            raise ValueError(f"frames of {small[1]}x{small[0]} px at the model's spacing exceed "
                             f"{MAX_PIXELS / 1e6:.0f} megapixels; crop the sequence")
        directions, outside = beam_directions(probe, self.scale, small, classifier.encoding)
        self.small, self.inside = small, ~outside
        self.outside = (np.zeros(self.shape, bool) if probe is None
                        else ~geom.fan_mask(probe, self.shape))
        if not self.inside.any():
            raise ValueError("the probe geometry leaves no pixel of the frames inside the fan")
        # Every input plane but the gray one is fixed by the geometry: encode them once.
        self.planes = patches.encode(np.zeros(small, np.uint8), directions, classifier.encoding)
        self.planes = self.planes.astype(np.float32) * classifier.scale
        self.grid = tuple(math.ceil(side / STRIDE) for side in small)
        self.passes = (self._sectors(directions) if classifier.encoding == "rotate"
                       else [self._window(self.inside)])

    def _window(self, where: np.ndarray, forward=None, members=None) -> _Pass:
        """The pass over the grid points around the pixels ``where`` (one point of margin)."""
        ys, xs = np.nonzero(where)
        rows = (max(0, ys.min() // STRIDE - 1), min(self.grid[0], ys.max() // STRIDE + 2))
        cols = (max(0, xs.min() // STRIDE - 1), min(self.grid[1], xs.max() // STRIDE + 2))
        return _Pass(rows, cols, forward, members)

    def _sectors(self, directions: np.ndarray) -> list[_Pass]:
        """The ``rotate`` encoding's sectors (as DenseClassifier cuts them), each in its own window."""
        c = self.classifier
        angles = np.degrees(np.arctan2(-directions[..., 0], directions[..., 1]))
        bins = np.round(np.where(self.inside, angles, 0) / c.angle_step).astype(int)
        centre = ((self.small[1] - 1) / 2, (self.small[0] - 1) / 2)
        passes = []
        for b in np.unique(bins[self.inside]):
            members = self.inside & (bins == b)
            forward = cv2.getRotationMatrix2D(centre, float(angles[members].mean()), 1.0)
            # Where the members land in the rotated frame (bilinear warps read 1 px around).
            landed = cv2.warpAffine(members.astype(np.uint8), forward, self.small[::-1],
                                    flags=cv2.INTER_LINEAR) > 0
            landed = ndimage.binary_dilation(landed, iterations=2) if landed.any() else members
            passes.append(self._window(landed, forward, members))
        return passes

    def _input(self, plane: np.ndarray, window: _Pass) -> np.ndarray:
        """The padded input of one pass for a (C, h, w) scaled plane stack."""
        c = self.classifier
        return c.window(c.padded(plane), window.rows, window.cols)

    def _maps(self, grid: np.ndarray, window: _Pass) -> np.ndarray:
        """Grid probabilities of a window, interpolated onto the small frame (zero elsewhere)."""
        (r0, r1), (c0, c1) = window.rows, window.cols
        # Beyond the last grid point of the frame the maps hold their edge values ("nearest").
        y0, y1 = STRIDE * r0, self.small[0] if r1 == self.grid[0] else STRIDE * (r1 - 1) + 1
        x0, x1 = STRIDE * c0, self.small[1] if c1 == self.grid[1] else STRIDE * (c1 - 1) + 1
        ys, xs = np.mgrid[y0:y1, x0:x1] / STRIDE
        ys, xs = ys - r0, xs - c0
        maps = np.zeros((grid.shape[0], *self.small), np.float32)
        for k, g in enumerate(grid):
            maps[k, y0:y1, x0:x1] = ndimage.map_coordinates(g, [ys, xs], order=1, mode="nearest")
        return maps

    def _batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Probabilities (K, h, w) on the small grid for each frame of a batch."""
        c = self.classifier
        smalls = [np.where(self.inside, resample.image(f, self.scale), 0).astype(np.float32) * c.scale
                  for f in frames]
        out = [np.zeros((c.classes, *self.small), np.float32) for _ in frames]
        for window in self.passes:
            inputs = []
            for gray in smalls:
                if window.forward is not None:
                    gray = cv2.warpAffine(gray, window.forward, self.small[::-1], flags=cv2.INTER_LINEAR)
                planes = self.planes.copy()
                planes[0] = gray
                inputs.append(self._input(planes, window))
            net = c.net(inputs[0].shape[1:], self.batch)
            net.blobs["data"].data[:len(inputs)] = np.stack(inputs)
            probs = net.forward()["prob"]
            for k, grid in enumerate(probs[:len(inputs)]):
                maps = self._maps(grid, window)
                if window.forward is None:
                    out[k] = maps
                    continue
                back = cv2.invertAffineTransform(window.forward)
                for j, m in enumerate(maps):
                    restored = cv2.warpAffine(m, back, self.small[::-1], flags=cv2.INTER_LINEAR)
                    out[k][j][window.members] = restored[window.members]
        for maps in out:
            maps[:, ~self.inside] = 0
        return out

    def classify(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(probabilities (K, H, W), labels (H, W) uint8, 255 outside the fan) per frame, in order."""
        pending: list[np.ndarray] = []
        for frame in frames:
            if frame.shape != self.shape:
                raise ValueError(f"a frame of {frame.shape[1]}x{frame.shape[0]} px in a sequence of "
                                 f"{self.shape[1]}x{self.shape[0]}")
            pending.append(frame)
            if len(pending) == self.batch:
                yield from self._finish(pending)
                pending = []
        if pending:
            yield from self._finish(pending)

    def _finish(self, frames: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for small in self._batch(frames):
            probs = resample.back(small, self.shape, self.scale)
            probs[:, self.outside] = 0
            labels = probs.argmax(axis=0).astype(np.uint8)
            labels[self.outside] = OUTSIDE
            yield probs, labels
