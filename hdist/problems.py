"""A Problem is dataset x model x loss: what every algorithm optimises.

It owns the data (both splits), builds the model for a seed, and gives the objective, its
gradient, per-sample gradients (``torch.func``) and evaluation (loss and error) on a split.
The objective is ``mean_i loss(f(x_i), y_i) + (l2/2) ||w||^2``.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from hdist import data as data_mod
from hdist import models
from hdist.data.root import data_root
from hdist.types import ConfigError


@dataclass
class Problem:
    data: data_mod.DataBundle
    model_cfg: dict
    loss_name: str  # cross_entropy | squared
    l2: float
    # Binary labels {0,1} fitted by one output with the squared loss (ridge regression on
    # ijcnn1, covtype, rcv1 as the thesis does): targets are mapped to {-1,+1}, the error is
    # the sign's.
    pm1: bool = False
    #: where the model is built and batches are delivered (:mod:`hdist.devices`); :meth:`to` moves a problem
    device: torch.device = torch.device("cpu")

    def __post_init__(self):
        info = self.data.info
        self._mean = self._std = None
        if info.get("mean") is not None and info.get("std") is not None:
            self._mean = torch.tensor(info["mean"], dtype=torch.float32, device="cpu").view(1, -1, 1, 1)
            self._std = torch.tensor(info["std"], dtype=torch.float32, device="cpu").view(1, -1, 1, 1)
        self._augment = bool(info.get("augment")) and self.data.info.get("augment_fn") is not None
        #: True when batches need a transform (normalisation, augmentation): loops skip the call otherwise.
        self.has_transform = self._mean is not None or self._augment
        if self._mean is not None:
            self._mean, self._std = self._mean.to(self.device), self._std.to(self.device)

    def to(self, device: torch.device) -> Problem:
        """This problem on ``device``: models are built there and batches delivered there. The training
        and test sets move there once when they fit in a quarter of the device's free memory (batches are
        then drawn by index on the device, so no host copy stalls it), else each batch is copied."""
        device = torch.device(device)
        if device == self.device:
            return self
        keep = device.type == "cpu" or _fits(self.data, device)
        data = data_mod.DataBundle(self.data.name, self.data.train.to(device, keep), self.data.test.to(device, keep),
                                   self.data.num_classes, self.data.source, self.data.description, self.data.info)
        return Problem(data, self.model_cfg, self.loss_name, self.l2, pm1=self.pm1, device=device)

    # --- batches ----------------------------------------------------------------------------
    def train_batch(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Augment (when the dataset asks for it, e.g. CIFAR crops and flips) then normalise."""
        if self._augment:
            x = self.data.info["augment_fn"](x, gen)
        return self.eval_batch(x)

    def eval_batch(self, x: torch.Tensor) -> torch.Tensor:
        if self._mean is not None and x.dim() == 4 and x.shape[1] == self._mean.shape[1]:
            x = (x - self._mean) / self._std
        return x

    def target(self, y: torch.Tensor) -> torch.Tensor:
        return y.to(torch.float32) * 2 - 1 if self.pm1 else y

    # --- model ------------------------------------------------------------------------------
    def build_model(self, seed: int) -> nn.Sequential:
        """The model, initialised deterministically from ``seed``."""
        cfg = dict(self.model_cfg)
        name = cfg.pop("name")
        # Module initialisers draw from torch's global generator: threads building models at
        # once (thread backend) must not interleave their draws.
        # Built on the CPU from the CPU generator, then moved: the same initial weights on every device,
        # whatever default device the caller has set.
        with _INIT_LOCK, torch.random.fork_rng(devices=[]), torch.device("cpu"):
            torch.manual_seed(seed)
            model = models.build_model(name, **cfg)
        return model.to(self.device)

    # --- objective --------------------------------------------------------------------------
    def data_loss(self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if self.loss_name == "cross_entropy":
            return F.cross_entropy(out, y, reduction=reduction)
        # squared loss 1/2 (f(x) - y)^2, as in ridge regression
        r = out.reshape(out.shape[0], -1).squeeze(1) - self.target(y).to(out.dtype)
        per = 0.5 * r.pow(2)
        return per.mean() if reduction == "mean" else per

    def reg(self, model: nn.Module) -> torch.Tensor:
        if self.l2 == 0:
            return torch.zeros((), device=self.device)
        # Each term on the problem's device: a model cut into stages on several GPUs (serial pipeline) sums
        # across them (a no-op move where the model is on one device).
        return 0.5 * self.l2 * sum(p.pow(2).sum().to(self.device) for p in model.parameters())

    @torch.no_grad()
    def reg_value(self, model: nn.Module) -> float:
        """The regulariser's value, for logging (no graph)."""
        return float(self.reg(model))

    def objective(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.data_loss(model(x), y) + self.reg(model)

    def per_sample_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gradients of the data loss for each sample separately: {param name: [B, *shape]}."""
        from torch.func import functional_call, grad, vmap

        params = {k: v.detach() for k, v in model.named_parameters()}
        buffers = {k: v.detach() for k, v in model.named_buffers()}

        def one(p, xi, yi):
            out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
            return self.data_loss(out, yi.unsqueeze(0))

        return vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)

    # --- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: data_mod.ArrayDataset, max_samples: int | None = None,
                 batch: int = 1000) -> dict[str, float]:
        """Objective (incl. regulariser) and error rate on ``split`` (first ``max_samples``)."""
        was_training = model.training
        model.eval()
        n = len(split) if max_samples is None else min(len(split), int(max_samples))
        total, wrong = 0.0, 0
        for lo in range(0, n, batch):
            idx = torch.arange(lo, min(n, lo + batch), device="cpu")  # ids index the split wherever it lives
            x, y = split[idx]
            out = model(self.eval_batch(x) if self.has_transform else x)
            total += float(self.data_loss(out, y, reduction="sum" if self.loss_name == "cross_entropy"
                                          else "none").sum())
            if self.loss_name == "cross_entropy":
                wrong += int((out.argmax(1) != y).sum())
            elif self.pm1:
                wrong += int(((out.reshape(-1) >= 0).long() != y).sum())
        model.train(was_training)
        res = {"loss": total / max(n, 1) + float(self.reg(model))}
        if self.loss_name == "cross_entropy" or self.pm1:
            res["error"] = wrong / max(n, 1)
        return res


    @torch.no_grad()
    def recalibrate_bn(self, model: nn.Module, split: data_mod.ArrayDataset, n_samples: int, batch: int,
                       seed: int) -> bool:
        """Re-estimate every BatchNorm layer's running statistics for the weights now in ``model``.

        Weights that no single model trained (a parameter server's x, an average of learners) come without
        running statistics of their own; evaluating them with someone else's mixes two networks. This
        resets the statistics and re-estimates them as exact averages (momentum None) over ``n_samples``
        training samples drawn with ``seed``, in mini-batches of ``batch`` (as torch.optim.swa_utils does
        for averaged weights). False, and nothing touched, for a model without BatchNorm.
        """
        if n_samples <= 0 or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            return False
        # Drawn on the host: the same samples on every device.
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        idx = torch.randperm(len(split), generator=g, device="cpu")[:int(n_samples)]
        batch = max(2, int(batch))  # training-mode BatchNorm needs two samples per channel

        def inputs():
            for lo in range(0, len(idx), batch):
                x, _ = split[idx[lo:lo + batch]]
                yield self.eval_batch(x) if self.has_transform else x

        torch.optim.swa_utils.update_bn(inputs(), model)
        return True

_CACHE: dict[str, tuple[Problem, dict]] = {}  # key -> (problem, stat stamps of the files its data read)
_INIT_LOCK = threading.RLock()
#: (id of the CPU problem, device) -> (that problem, its copy on the device)
_ON_DEVICE: dict[tuple[int, str], tuple[Problem, Problem]] = {}


def build_problem(cfg: Any, device: torch.device | str | None = None) -> Problem:
    """The run's Problem (data loaded once per process and config; thread-safe), on ``device`` (a rank's
    ``ctx.device``; None: the CPU). A problem is moved to each device once and kept."""
    with _INIT_LOCK:
        prob = _build_problem(cfg)
        if device is None or torch.device(device) == prob.device:
            return prob
        key = (id(prob), str(torch.device(device)))
        moved = _ON_DEVICE.get(key)
        if moved is None or moved[0] is not prob:
            moved = _ON_DEVICE[key] = (prob, prob.to(device))
        return moved[1]


def _fits(data: data_mod.DataBundle, device: torch.device) -> bool:
    """Whether both splits' dense tensors take at most a quarter of ``device``'s free memory."""
    total = 0
    for split in (data.train, data.test):
        for t in (split.X, split.y):
            if not isinstance(t, torch.Tensor):
                return False
            total += t.numel() * t.element_size()
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return total <= free // 4


def _build_problem(cfg: Any) -> Problem:
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    # The data root is part of what is loaded ($HDIST_DATA is not in the config); dataset.identity is what
    # was loaded (set by hdist.launch after a first load), not a setting of the load.
    dataset.pop("identity", None)
    key = json.dumps([dataset, str(data_root(cfg.dataset)), OmegaConf.to_container(cfg.model, resolve=True),
                      OmegaConf.to_container(cfg.objective, resolve=True)], sort_keys=True)
    if key in _CACHE:
        prob, stamps = _CACHE[key]
        if _stamps(stamps) == stamps:
            return prob
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    spec = models.get_spec(model_cfg["name"])
    input_shape = tuple(model_cfg.get("input_shape") or spec.input_shape)
    num_classes = int(model_cfg.get("num_classes") or spec.num_classes)
    bundle = load_data(cfg.dataset, input_shape, num_classes, int(cfg.seed))
    _check_compat(cfg, bundle, input_shape, num_classes)
    loss = cfg.objective.loss
    pm1 = num_classes == 1 and bundle.num_classes == 2
    if loss == "auto":
        loss = "cross_entropy" if bundle.num_classes > 0 and not pm1 else "squared"
    if loss == "cross_entropy" and (bundle.num_classes == 0 or pm1):
        raise ConfigError(f"objective.loss=cross_entropy: dataset={cfg.dataset.name} with model.num_classes="
                          f"{num_classes} needs the squared loss; allowed: auto, squared")
    if "augment" in cfg.dataset and cfg.dataset.augment and bundle.info.get("augment"):
        from hdist.data.cifar import augment

        bundle.info["augment_fn"] = augment
    prob = Problem(bundle, model_cfg, loss, float(cfg.objective.l2), pm1=pm1 and loss == "squared")
    files = bundle.info.get("data_files") or {}
    _CACHE[key] = (prob, _stamps({p: None for p in files if p != "generator"}))
    return prob


def _stamps(files: dict) -> dict:
    """(mtime, size) now of each of ``files`` (None: gone): a file rewritten since its data was cached is
    read again (a fixed data file is other data, with its own run id: hdist.launch)."""
    out = {}
    for p in files:
        try:
            st = os.stat(p)
            out[p] = (st.st_mtime_ns, st.st_size)
        except OSError:
            out[p] = None
    return out


def load_data(dcfg: Any, input_shape, num_classes: int, seed: int) -> data_mod.DataBundle:
    """Load the dataset; with ``dataset.fallback: synthetic`` a missing real dataset is replaced
    by a clearly labelled synthetic stand-in of the same shape and size."""
    try:
        return data_mod.load(dcfg, input_shape=input_shape, num_classes=num_classes, seed=seed)
    except ConfigError as e:
        if dcfg.get("fallback") != "synthetic":
            raise
        reason = str(e)
    shape = list(dcfg.get("shape") or input_shape)
    if math.prod(shape) == math.prod(input_shape):
        shape = list(input_shape)  # as the real loaders do: flat vectors for flat models
    stand_in = {"name": "synthetic", "n_train": dcfg.get("n_train") or 10000, "n_test": dcfg.get("n_test") or 2000,
                "shape": shape, "num_classes": dcfg.get("num_classes") or num_classes}
    b = data_mod.load(stand_in, input_shape=input_shape, num_classes=num_classes, seed=seed)
    b.name = f"{dcfg['name']} (synthetic stand-in)"
    b.description = f"synthetic stand-in for {dcfg['name']}: {reason}"
    b.info["stand_in_for"] = dcfg["name"]
    b.info["stand_in_line"] = stand_in_line(dcfg, reason)
    return b


#: how the stand-in line names a dataset (others: their config name)
DISPLAY_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet"}


def stand_in_line(dcfg: Any, reason: str) -> str:
    """The one line that says a real dataset was replaced, where it was looked for and why it was not fetched."""
    from hdist.data.root import OFFLINE_ENV, data_root

    name = DISPLAY_NAMES.get(dcfg["name"], dcfg["name"])
    if "downloads are off" in reason:
        off = "dataset.download=false" if dcfg.get("download") is False else f"{OFFLINE_ENV}=1"
        why = f"cannot be downloaded (offline: {off})"
    elif "offline" in reason:
        why = "cannot be downloaded (offline)"
    elif "download failed" in reason:
        why = "could not be downloaded (the server answered with an error)"
    else:
        why = "has no download source"
    return f"{name} not found under {data_root(dcfg)} and {why}: using the labelled synthetic stand-in"


def _check_compat(cfg, bundle, input_shape, num_classes) -> None:
    have = list(bundle.input_shape)
    want = list(input_shape)
    if not (have == want or (len(want) == 1 and math.prod(have) == want[0])):
        raise ConfigError(f"model={cfg.model.name}: expects input {want} but dataset={cfg.dataset.name} gives "
                          f"{have}; choose a model whose model.input_shape matches")
    if bundle.num_classes > num_classes and not (num_classes == 1 and bundle.num_classes == 2):
        raise ConfigError(f"model.num_classes={num_classes}: dataset={cfg.dataset.name} has "
                          f"{bundle.num_classes} classes; set model.num_classes={bundle.num_classes}")
