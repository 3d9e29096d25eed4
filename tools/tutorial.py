#!/usr/bin/env python
"""Run the tutorial's Parts 1-2 to 1-4 and print their checks: one command per part.

    python tools/tutorial.py backprop   # hand-derived CNN gradients vs Caffe, then train on 2000
    python tools/tutorial.py rbm        # binary RBM by CD-1, its bases, digit accuracy
    python tools/tutorial.py adaboost   # the worked example, then stumps on two MNIST digits

Figures (PNG) go to ``--out`` (default ``runs/tutorial/``).
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fetal_biometry.tutorial import adaboost, backprop, mnist, rbm  # noqa: E402

SOURCE_RBM_ACCURACY = 0.5927  # "At 10000 iteration with learning coefficient 0.01, ... 59.27%"


def _save(fig, out: pathlib.Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / name, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"  wrote {out / name}")


# --- backprop ----------------------------------------------------------------------------------

def _caffe_checks(args, params, x, T) -> None:
    """Forward, gradients and one SGD step of the NumPy formulas against Caffe."""
    try:
        from fetal_biometry.caffe_env import caffe
        caffe().set_mode_cpu()
    except ImportError as err:
        print(f"\nCaffe checks skipped: {err}")
        return
    n = len(x)
    with tempfile.TemporaryDirectory() as folder:
        net = backprop.caffe_net(n, folder)
        activations, caffe_grads = backprop.caffe_forward_backward(net, params, x, T)
        fw = backprop.forward(params, x.astype(np.float64))
        _, grads = backprop.gradients(params, x.astype(np.float64), T.astype(np.float64))
        print(f"\nForward pass vs Caffe ({n} images), max |NumPy - Caffe| / max |value|:")
        for h, values in activations.items():
            mine = getattr(fw, h)
            err = backprop.relative_error(mine, values.reshape(mine.shape))
            print(f"  {h} {str(mine.shape[1:]):>15}  {err:.2e}")
        print("  E: NumPy %.6f, Caffe loss x N %.6f (Caffe's EuclideanLoss is the batch mean)"
              % (backprop.error(fw.h6, T), n * float(net.blobs["loss"].data)))
        print("\nGradients vs Caffe's backward (Caffe's diff x N), relative error "
              "(< 1e-4 required):")
        for name in backprop.NAMES:
            print(f"  dE/d{name:<3} {str(grads[name].shape):>17}  "
                  f"{backprop.relative_error(grads[name], caffe_grads[name]):.2e}")
        eta = args.check_lr / n
        stepped = backprop.caffe_sgd_step(params, x, T, args.check_lr, folder)
        mine = backprop.descend(params, grads, eta)
        print(f"\nOne step W <- W - eta grad E (eta = {eta:g}) vs one Caffe SGD iteration "
              f"(base_lr = N eta = {args.check_lr:g}), relative error of the change in W:")
        for name in backprop.NAMES:
            err = backprop.relative_error(mine[name] - params[name], stepped[name] - params[name])
            print(f"  {name:<3} {err:.2e}")


def _finite_differences(params, x, T, grads, rng) -> None:
    print(f"\nFinite differences (float64, {len(x)} images, step 1e-6) on 3 weights per parameter:")
    worst = 0.0
    for name in backprop.NAMES:
        indices = [tuple(int(rng.integers(s)) for s in params[name].shape) for _ in range(2)]
        indices.append(np.unravel_index(np.abs(grads[name]).argmax(), grads[name].shape))
        for index in indices:
            fd = backprop.finite_difference(params, x, T, name, index)
            analytic = grads[name][index]
            worst = max(worst, abs(fd - analytic) / max(abs(analytic), 1e-8))
            print(f"  {name}{list(map(int, index))!s:<18} formula {analytic:+.8f}  "
                  f"finite difference {fd:+.8f}")
    print(f"  worst relative difference {worst:.1e}")


def run_backprop(args) -> None:
    rng = np.random.default_rng(args.seed)
    params = backprop.random_params(rng)
    x, labels = mnist.load("train", limit=args.check_batch)
    T = mnist.one_hot(labels)
    print("Part 1-2: CNN Input [1@28x28] - C1[32@24x24] - P2[32@12x12] - C3[64@8x8] - "
          "P4[64@4x4] - F5[256] - output[10]")
    print(f"  unknowns: {sum(v.size for v in params.values())} (source: 26x32 + 801x64 + "
          f"1025x256 + 257x10 = {26 * 32 + 801 * 64 + 1025 * 256 + 257 * 10})")
    x4, T4 = x[:4].astype(np.float64), T[:4].astype(np.float64)
    _finite_differences(params, x4, T4, backprop.gradients(params, x4, T4)[1], rng)
    if not args.no_caffe:
        _caffe_checks(args, params, x, T)
    if args.epochs == 0:
        return

    x_train, y_train = mnist.load("train", limit=args.samples)
    x_test, y_test = mnist.load("test")
    batch = args.batch_size or None
    print(f"\nTraining in NumPy on the first {len(x_train)} MNIST training images: squared error "
          f"E, plain gradient descent (no momentum), eta = {args.eta:g}, "
          f"{'full batch' if batch is None else f'{batch} images per step'}, {args.epochs} epochs")
    start = time.perf_counter()
    trained, history = backprop.train(backprop.initialize(np.random.default_rng(args.seed)),
                                      x_train, mnist.one_hot(y_train), args.eta, args.epochs,
                                      batch, seed=args.seed, progress=True)
    seconds = time.perf_counter() - start
    train_accuracy = (backprop.predict(trained, x_train) == y_train).mean()
    test_accuracy = (backprop.predict(trained, x_test) == y_test).mean()
    print(f"  E: {history[0]:.1f} -> {history[-1]:.1f} in {seconds:.0f} s")
    print(f"  training accuracy {train_accuracy:.2%}")
    print(f"  MNIST test accuracy ({len(x_test)} images): {test_accuracy:.2%}")

    out = pathlib.Path(args.out)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy(history, marker="o", markersize=3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="epoch", ylabel=r"$E(W) = \frac{1}{2}\sum_k \|o(x[k]) - T[k]\|^2$",
           title=f"CNN, {len(x_train)} samples: test accuracy {test_accuracy:.2%}")
    _save(fig, out, "backprop_error.png")


# --- RBM ---------------------------------------------------------------------------------------

def run_rbm(args) -> None:
    images, labels = mnist.load("train", limit=args.limit)
    test_images, test_labels = mnist.load("test")
    V, V_test = rbm.binarize(images), rbm.binarize(test_images)
    print(f"Part 1-3: binary RBM, {V.shape[1]} visible (MNIST pixels > 0.5) x {args.hidden} "
          f"hidden units, CD-1, epsilon = {args.epsilon:g}, {args.iterations} iterations of "
          f"{args.batch_size} image(s) each")
    machine, history = rbm.train(V, args.hidden, args.epsilon, args.iterations,
                                 args.batch_size, seed=args.seed, progress=True)
    window = max(1, min(500, args.iterations // 10))
    print(f"  reconstruction error per pixel: first {window} iterations "
          f"{history[:window].mean():.4f}, last {window} {history[-window:].mean():.4f}")

    print("Readout (ours; the source does not say): multinomial logistic regression on the "
          f"hidden probabilities P(h|v), L-BFGS, L2 {args.l2:g}, fitted on {len(V)} "
          "training images")
    B, c = rbm.fit_readout(rbm.hidden_probabilities(V, machine), labels, l2=args.l2)
    accuracy = (rbm.predict_readout(rbm.hidden_probabilities(V_test, machine), B, c)
                == test_labels).mean()
    print(f"  MNIST test accuracy: {accuracy:.2%}   (source: {SOURCE_RBM_ACCURACY:.2%})")
    if args.baselines:
        untrained = rbm.initialize(V.shape[1], args.hidden, np.random.default_rng(args.seed))
        B0, c0 = rbm.fit_readout(rbm.hidden_probabilities(V, untrained), labels, l2=args.l2)
        acc0 = (rbm.predict_readout(rbm.hidden_probabilities(V_test, untrained), B0, c0)
                == test_labels).mean()
        Bp, cp = rbm.fit_readout(V, labels, l2=args.l2)
        accp = (rbm.predict_readout(V_test, Bp, cp) == test_labels).mean()
        print(f"  same readout on the untrained RBM's features: {acc0:.2%}; "
              f"on the binary pixels themselves: {accp:.2%}")

    out = pathlib.Path(args.out)
    columns = int(np.ceil(np.sqrt(args.hidden)))
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(rbm.bases_grid(machine.W, columns=columns), cmap="gray")
    ax.set(title=f"RBM bases: the {args.hidden} columns of W ({args.iterations} iterations)",
           xticks=[], yticks=[])
    _save(fig, out, "rbm_bases.png")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    smooth = np.convolve(history, np.ones(window) / window, mode="valid")
    ax.plot(np.arange(window, window + len(smooth)), smooth)
    ax.set(xlabel="iteration", ylabel="reconstruction error per pixel",
           title=f"CD-1 training (running mean over {window})")
    _save(fig, out, "rbm_reconstruction.png")


# --- AdaBoost ----------------------------------------------------------------------------------

def _worked_example() -> None:
    """The source's O/X quiz: 100 questions, a weak learner scoring 80."""
    y = np.ones(100)
    h = np.where(np.arange(100) < 80, 1, -1)
    D1 = adaboost.initial_distribution(100)
    epsilon = adaboost.weighted_error(D1, h, y)
    alpha = adaboost.alpha(epsilon)
    unnormalised, Z = adaboost.reweight(D1, alpha, y, h)
    print("Worked example (O/X quiz, 100 questions, h_1 scores 80):")
    print(f"  epsilon_1 = {epsilon:.4f}, alpha_1 = {alpha:.6f}, ln 2 = {np.log(2):.6f}")
    print(f"  D_1 e^(-alpha y h): right {unnormalised[0]:.6f} (1/200 = {1 / 200:.6f}), "
          f"wrong {unnormalised[-1]:.6f} (1/50 = {1 / 50:.6f}); Z_1 = {Z:.4f}")
    D2 = unnormalised / Z
    print(f"  D_2: right {D2[0]:.6f}, wrong {D2[-1]:.6f}; total weight on the wrong answers "
          f"{D2[h != y].sum():.2f}")


def run_adaboost(args) -> None:
    print("Part 1-4: AdaBoost")
    _worked_example()
    positive, negative = args.digits
    X, y = adaboost.digits_task(*mnist.load("train", limit=args.limit), positive, negative)
    X_test, y_test = adaboost.digits_task(*mnist.load("test"), positive, negative)
    print(f"\nMNIST {positive} (+1) vs {negative} (-1): {len(y)} training, {len(y_test)} test "
          f"images, decision stumps on the 784 pixels, {args.rounds} rounds")
    model = adaboost.fit(X, y, args.rounds, progress=True)
    train_error = adaboost.staged_errors(model, X, y)
    test_error = adaboost.staged_errors(model, X_test, y_test)
    for t in sorted({1, 10, 50, 100, len(model.alphas)} & set(range(1, len(model.alphas) + 1))):
        print(f"  T = {t:4d}: epsilon_T = {model.errors[t - 1]:.3f}, alpha_T = "
              f"{model.alphas[t - 1]:.3f}, training error {train_error[t - 1]:.2%}, "
              f"test error {test_error[t - 1]:.2%}")

    out = pathlib.Path(args.out)
    rounds = np.arange(1, len(model.alphas) + 1)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(rounds, train_error, label="training error")
    ax.plot(rounds, test_error, label="test error")
    ax.set(xlabel="rounds $T$", ylabel=r"error of $H(x) = \mathrm{sign}(\sum_t \alpha_t h_t(x))$",
           title=f"AdaBoost with stumps, MNIST {positive} vs {negative}", ylim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, out, "adaboost_error.png")


# --- Command line ------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="The tutorial's Part 1-2 (CNN backpropagation), 1-3 (RBM) and 1-4 "
                    "(AdaBoost), run and checked on MNIST.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="part", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, description=help,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        s.add_argument("--out", default="runs/tutorial", help="folder for the PNG figures")
        s.add_argument("--seed", type=int, default=0, help="seed of every random choice")
        return s

    b = add("backprop", "hand-derived CNN gradients: finite differences, Caffe's forward, "
                        "backward and SGD step, then training on 2000 images")
    b.add_argument("--check-batch", type=int, default=16, help="images in the checks")
    b.add_argument("--check-lr", type=float, default=0.1,
                   help="Caffe base_lr of the one-step check (NumPy eta = base_lr / batch)")
    b.add_argument("--no-caffe", action="store_true", help="skip the comparisons with Caffe")
    b.add_argument("--samples", type=int, default=2000, help="training images (the source's 2000)")
    b.add_argument("--eta", type=float, default=0.002, help="learning rate of W <- W - eta grad E")
    b.add_argument("--batch-size", type=int, default=20,
                   help="images per gradient step; 0 = all of them (full-batch descent)")
    b.add_argument("--epochs", type=int, default=20, help="passes over the training images; "
                                                          "0 skips training")
    b.set_defaults(run=run_backprop)

    r = add("rbm", "binary RBM trained by CD-1, its bases, and a digit readout")
    r.add_argument("--hidden", type=int, default=100, help="hidden units (bases)")
    r.add_argument("--epsilon", type=float, default=0.01, help="learning coefficient")
    r.add_argument("--iterations", type=int, default=10_000, help="CD-1 updates")
    r.add_argument("--batch-size", type=int, default=1,
                   help="images per update (1: the source's per-image rule)")
    r.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    r.add_argument("--l2", type=float, default=1e-4, help="L2 penalty of the readout")
    r.add_argument("--baselines", action="store_true",
                   help="also fit the readout on untrained features and on raw pixels")
    r.set_defaults(run=run_rbm)

    a = add("adaboost", "the source's worked example, then AdaBoost with stumps on two digits")
    a.add_argument("--digits", type=int, nargs=2, default=(3, 5), metavar=("POS", "NEG"),
                   help="the two digits to tell apart")
    a.add_argument("--rounds", type=int, default=200, help="boosting rounds T")
    a.add_argument("--limit", type=int, default=None,
                   help="use only the first N training images (before picking the digits)")
    a.set_defaults(run=run_adaboost)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
