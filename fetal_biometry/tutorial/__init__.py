"""The tutorial's Parts 1-2 to 1-4, in code a student can follow beside the slides.

* :mod:`~fetal_biometry.tutorial.backprop`: the MNIST CNN's forward pass and hand-derived
  gradients of :math:`E(W) = \\frac12 \\sum_k \\|o(x[k]) - T[k]\\|^2`, layer by layer, in NumPy
  (checked against Caffe in the tests);
* :mod:`~fetal_biometry.tutorial.rbm`: a binary restricted Boltzmann machine trained with one
  step of contrastive divergence;
* :mod:`~fetal_biometry.tutorial.adaboost`: AdaBoost with decision stumps;
* :mod:`~fetal_biometry.tutorial.mnist`: the MNIST digits, and the LMDBs the tutorial's nets read.

``python tools/tutorial.py backprop|rbm|adaboost`` runs each part.
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "backprop": ("Params", "NAMES", "SHAPES", "CAFFE_PARAMS", "CAFFE_BLOBS", "g", "g_prime",
                 "f", "f_prime", "patches", "correlate", "layer1", "max_pool", "layer2",
                 "layer3", "layer4", "layer5", "layer6", "Forward", "forward", "error",
                 "delta6", "grad_w6", "grad_b6", "grad_h5", "through_relu", "grad_w5",
                 "grad_b5", "grad_h4", "unpool", "grad_w3", "grad_b3", "grad_h2", "grad_w1",
                 "grad_b1", "backward", "gradients", "descend", "total_error",
                 "load_into_caffe", "from_caffe", "relative_error", "finite_difference",
                 "random_params", "caffe_net", "feed_caffe", "caffe_forward_backward",
                 "caffe_sgd_step"),
    "rbm": ("RBM", "binarize", "energy", "free_energy", "hidden_probabilities",
            "visible_probabilities", "sample", "gibbs_step", "cd1_update", "apply",
            "reconstruction_error", "all_states", "log_partition", "exact_log_likelihood",
            "exact_gradient", "fit_readout", "predict_readout", "bases_grid"),
    "adaboost": ("PERFECT", "Stump", "Boosted", "initial_distribution", "weighted_error",
                 "alpha", "reweight", "update_distribution", "SortedFeatures", "sort_features",
                 "fit_stump", "predict_stump", "fit", "staged_scores", "staged_errors",
                 "digits_task"),
    "mnist": ("SPLITS", "data_path", "load", "one_hot", "write_lmdb"),
})
