"""What watches a training run: validation passes over a test net (:func:`validate`) and the
divergence detector (:class:`Divergence`) fed with each iteration's loss and validation."""
from __future__ import annotations

import collections
import math

import numpy as np


def loss(net) -> float:
    """The net's weighted loss after a forward pass."""
    weights = net.blob_loss_weights
    return float(sum(weights[name] * net.blobs[name].data.sum()
                     for name in net.outputs if weights.get(name)))


def validate(net, net_param, iterations: int) -> dict:
    """Run a test net ``iterations`` times: mean outputs, accuracy, per-class accuracy, confusion.

    Dense nets (scores (N, K, H, W), one label per pixel) are scored pixel by pixel, the
    Accuracy layer's ``ignore_label`` left out, and get per-class Dice
    (``2 TP / (true + predicted)``) beside per-class accuracy (the share of each true class's
    pixels found).
    """
    accuracy = next((l for l in net_param.layer if l.type == "Accuracy"), None)
    ignore = accuracy.accuracy_param.ignore_label \
        if accuracy is not None and accuracy.accuracy_param.HasField("ignore_label") else None
    dense = False
    sums: dict[str, float] = {}
    confusion = None
    for _ in range(iterations):
        outputs = net.forward()
        for name, value in outputs.items():
            sums[name] = sums.get(name, 0.0) + float(np.mean(value))
        if accuracy is not None:
            scores, labels = (net.blobs[b].data for b in accuracy.bottom[:2])
            predicted = scores.argmax(axis=1).ravel()
            truth = labels.astype(int).ravel()
            classes = scores.shape[1]
            dense = scores.ndim > 2
            if ignore is not None:
                counted = truth != ignore
                predicted, truth = predicted[counted], truth[counted]
            counts = np.bincount(truth * classes + predicted, minlength=classes * classes)
            confusion = counts.reshape(classes, classes) + (0 if confusion is None else confusion)
    result = {name: total / iterations for name, total in sums.items()}
    if confusion is not None:
        seen = confusion.sum(axis=1)
        result["per_class_accuracy"] = [float(c / s) if s else None
                                        for c, s in zip(np.diag(confusion), seen)]
        result["confusion"] = confusion.tolist()
        if dense:
            predicted = confusion.sum(axis=0)
            result["per_class_dice"] = [float(2 * c / (s + p)) if s + p else None
                                        for c, s, p in zip(np.diag(confusion), seen, predicted)]
    return result


class Divergence:
    """Tells divergence by what it is, from the losses and validations of a run.

    - a loss that is not finite;
    - the mean loss of the last ``window`` iterations staying above ``ratio`` times its lowest
      value so far (the first loss included) for ``window`` more iterations (a softmax loss
      saturates near 87, so a multiple of the first loss can miss a run gone to chance);
    - validation accuracy no better than always answering the most frequent class (within
      ``margin``), once ``warmup`` iterations are done.

    :attr:`onset` is the iteration after which snapshots are suspect.
    """

    def __init__(self, window: int, warmup: int, ratio: float = 3.0, margin: float = 0.02,
                 start: int = 0):
        self.window, self.warmup, self.ratio, self.margin = window, warmup, ratio, margin
        self._recent: collections.deque = collections.deque(maxlen=window)
        self._lowest = math.inf
        self._above_since: int | None = None
        self._fine = start  # last iteration known good (the resumed-from state counts as good)
        self.onset = start

    @classmethod
    def for_run(cls, max_iter: int, ratio: float = 3.0, start: int = 0) -> "Divergence":
        """Window scaled to the run (5 to 50 iterations); warm-up 100 iterations or a tenth of the run."""
        window = max(5, min(50, max_iter // 20))
        return cls(window, max(100, max_iter // 10), ratio, start=start)

    def loss(self, iteration: int, loss: float) -> str | None:
        """Feed one iteration's loss; returns why training diverged, or None."""
        if not math.isfinite(loss):
            self.onset = self._fine
            return f"the loss is {loss} at iteration {iteration}"
        self._recent.append(loss)
        # Early on the mean is over fewer iterations: the lowest then includes the first loss,
        # so a loss that jumps within the first window still counts as rising.
        mean = sum(self._recent) / len(self._recent)
        self._lowest = min(self._lowest, mean)
        if mean <= self.ratio * self._lowest:
            self._above_since = None
            self._fine = max(self._fine, iteration - self.window)
            return None
        self._above_since = self._above_since or iteration
        if iteration - self._above_since < self.window:
            return None
        self.onset = self._fine
        return (f"the mean loss of the last {self.window} iterations ({mean:.4g}) has stayed above "
                f"{self.ratio:g}x its lowest ({self._lowest:.4g}) since iteration {self._above_since}")

    def validation(self, iteration: int, result: dict) -> str | None:
        """Feed one validation (:func:`validate`'s result); returns why training failed, or None."""
        if "accuracy" not in result or "confusion" not in result:
            return None
        confusion = np.asarray(result["confusion"])
        chance = confusion.sum(axis=1).max() / max(1, confusion.sum())
        if result["accuracy"] > chance + self.margin:
            self._fine = max(self._fine, iteration)
            return None
        if iteration < self.warmup:
            return None
        self.onset = self._fine
        return (f"validation accuracy {result['accuracy']:.3f} at iteration {iteration} is at "
                f"chance ({chance:.3f}: always the most frequent class)")
