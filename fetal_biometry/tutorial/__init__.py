"""The tutorial's Parts 1-2 to 1-4, in code a student can follow beside the slides.

* :mod:`~fetal_biometry.tutorial.backprop`: the MNIST CNN's forward pass and hand-derived
  gradients of :math:`E(W) = \\frac12 \\sum_k \\|o(x[k]) - T[k]\\|^2`, layer by layer, in NumPy
  (checked against Caffe in the tests);
* :mod:`~fetal_biometry.tutorial.rbm`: a binary restricted Boltzmann machine trained with one
  step of contrastive divergence;
* :mod:`~fetal_biometry.tutorial.adaboost`: AdaBoost with decision stumps.

``python tools/tutorial.py backprop|rbm|adaboost`` runs each part.
"""
