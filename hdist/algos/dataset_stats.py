"""dataset_stats: record the statistics of the data a run loads (thesis Table 2: samples, dimension, sparsity).

Not a training algorithm: one serial rank loads the run's dataset and logs, as ``event`` rows, what the thesis'
Table 2 lists (Huo, PhD thesis 2020, section 3.5.1: "Experimental datasets from LIBSVM") plus what the PCA data
of section 3.5.2 promises (centred, unit-norm rows):

- ``real``: 1 when the dataset's files were read, 0 for synthetic data (a labelled stand-in, see
  ``dataset.fallback``, or a dataset that is synthetic by construction such as ``pca``);
- ``{split}_samples`` and ``{split}_nnz`` for split = train, test; ``dimension`` (features per sample);
- ``{split}_density``: non-zero entries / (samples x dimension), and ``density`` over both splits;
- ``row_norm_mean``, ``row_norm_min``, ``row_norm_max`` (Euclidean norms of the training rows) and
  ``mean_norm`` (norm of the training rows' mean: 0 for centred data).

``algo.whole: true`` counts every sample of the real files: the run's ``dataset.n_train`` / ``n_test`` then size
only the synthetic stand-in (so that a missing 47,236-wide rcv1 does not become a GB-sized dense stand-in),
while real data is re-read with no first-n cut (the LIBSVM parser caches parsed files, so this costs little).
Sparse data stays sparse throughout (counts come from the CSR matrix).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from omegaconf import OmegaConf

from hdist import data as data_mod
from hdist.problems import build_problem
from hdist.types import AlgoSpec

FAMILIES = ("serial",)


def split_stats(split: data_mod.ArrayDataset) -> dict[str, float]:
    """samples, dimension, non-zeros, row norms and the norm of the mean of one split (sparse or dense)."""
    n = len(split)
    d = math.prod(split.sample_shape)
    X = split.X
    if data_mod.is_sparse(X):
        nnz = int(X.count_nonzero())
        sq = np.asarray(X.multiply(X).sum(1), dtype=np.float64).ravel()
        mean = np.asarray(X.mean(0), dtype=np.float64).ravel()
    else:
        Xt = torch.as_tensor(X, device="cpu").reshape(n, -1).to(torch.float64)
        nnz = int((Xt != 0).sum())
        sq = (Xt * Xt).sum(1).numpy()
        mean = Xt.mean(0).numpy() if n else np.zeros(d)
    norms = np.sqrt(sq) if n else np.zeros(1)
    return {"samples": n, "dimension": d, "nnz": nnz, "density": nnz / max(1, n * d),
            "row_norm_mean": float(norms.mean()), "row_norm_min": float(norms.min()),
            "row_norm_max": float(norms.max()), "mean_norm": float(np.linalg.norm(mean))}


def whole(cfg, bundle: data_mod.DataBundle) -> data_mod.DataBundle:
    """The real dataset with no first-n cut (``algo.whole``); synthetic data is returned as loaded."""
    if bundle.source != "real" or not cfg.algo.get("whole"):
        return bundle
    dcfg = OmegaConf.to_container(cfg.dataset, resolve=True)
    dcfg["n_train"] = dcfg["n_test"] = None
    return data_mod.load(dcfg, input_shape=tuple(cfg.model.input_shape), num_classes=int(cfg.model.num_classes),
                         seed=int(cfg.seed))


def run(ctx) -> None:
    cfg, log = ctx.cfg, ctx.log
    ctx.progress.start(1)
    # The data as loaded, on the host on every device: no model trains here, and the statistics are numpy's.
    bundle = whole(cfg, build_problem(cfg, "cpu").data)
    tr, te = split_stats(bundle.train), split_stats(bundle.test)
    rows = {"real": float(bundle.source == "real"), "dimension": tr["dimension"],
            "density": (tr["nnz"] + te["nnz"]) / max(1, (tr["samples"] + te["samples"]) * tr["dimension"])}
    for name, s in (("train", tr), ("test", te)):
        rows.update({f"{name}_samples": s["samples"], f"{name}_nnz": s["nnz"], f"{name}_density": s["density"]})
    rows.update({k: tr[k] for k in ("row_norm_mean", "row_norm_min", "row_norm_max", "mean_norm")})
    log.log_many("event", rows)
    ctx.progress.update(1)


SPEC = AlgoSpec(FAMILIES, run)
