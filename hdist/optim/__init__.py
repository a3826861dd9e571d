"""Large-batch optimizers of thesis ch. 4, as backend-free ``torch.optim.Optimizer`` subclasses.

- :class:`MNAG`: mini-batch Nesterov accelerated gradient, eq. (4.2) / (4.6).
- :class:`LARS`: mNAG with the layer-wise rate of eq. (4.3).
- :class:`CLARS`: mNAG with the complete layer-wise rate of eq. (4.7) / (4.8); its step needs the
  mean per-sample gradient norm of each layer, which :class:`SampleGradStats` computes.

A *layer* k is one parameter tensor ((w)_k in the thesis' w = [(w)_1, ..., (w)_K]): a conv or
linear weight, a bias, a BatchNorm scale or shift. :func:`layer_param_groups` decides which
layers get the layer-wise rate (``layerwise``) and which the plain rate.
"""

from hdist.optim.clars import CLARS, SampleGradStats
from hdist.optim.lars import LARS
from hdist.optim.mnag import MNAG, layer_param_groups, named_rates, top_level_layers

__all__ = ["MNAG", "LARS", "CLARS", "SampleGradStats", "layer_param_groups", "named_rates", "top_level_layers"]
