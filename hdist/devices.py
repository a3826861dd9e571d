"""The one device rule: where each rank's model and data live (``topology.devices``).

- ``cpu``: every rank on the CPU.
- ``cuda``: rank r on ``cuda:(local rank mod visible GPUs)``. Asking for it where torch sees no GPU is a
  :class:`~hdist.types.ConfigError` (one line, exit 2), never a silent fall-back to the CPU.
- ``auto``: ``cuda`` where torch sees a GPU, else ``cpu``. :func:`resolve` settles it once, in the parent,
  before the run id is computed: the config a run stores (and hashes) names the device it ran on, so a
  CPU run of ``auto`` is the run ``cpu`` always was (same run id) and a GPU run is another run.

The local rank is the rank's index among the ranks of its machine: the launcher's (torchrun's
``LOCAL_RANK``, srun's ``SLURM_LOCALID``, Open MPI's ``OMPI_COMM_WORLD_LOCAL_RANK``, MPICH's
``MPI_LOCALRANKID``) when a launcher started the rank, else the index hdist's own spawn gives it.

Small verbs (``ls``, ``--help``) import no torch: :func:`resolve` looks for a GPU driver first and imports
torch only where one is present.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from hdist.types import ConfigError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")

#: Environment variables that carry a rank's index on its machine, by launcher, in the order looked at.
LOCAL_RANK_ENV = ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK")


def _driver_present() -> bool:
    """A cheap look for an NVIDIA driver, so that a CPU machine never imports torch to settle ``auto``."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidiactl").exists()


def gpu_count() -> int:
    """GPUs torch can use in this process (0 without CUDA)."""
    if not _driver_present():
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve(value: Any) -> str:
    """``topology.devices`` settled to ``cpu`` or ``cuda`` on this machine; ConfigError for a bad value or
    for ``cuda`` without a GPU."""
    v = str(value).lower() if value is not None else "cpu"
    if v not in DEVICES:
        raise ConfigError(f"topology.devices={value!r}: not allowed; expected {', '.join(DEVICES)}")
    if v == "cpu":
        return "cpu"
    n = gpu_count()
    if v == "auto":
        return "cuda" if n else "cpu"
    if n == 0:
        raise ConfigError(f"topology.devices=cuda: {_no_gpu_reason()}; allowed here: cpu or auto")
    return "cuda"


def _no_gpu_reason() -> str:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} hides every GPU"
    if not _driver_present():
        return "this machine has no GPU (no NVIDIA driver)"
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    return "torch sees no GPU (torch.cuda.is_available() is False)"


def local_rank(default: int = 0, env: Mapping[str, str] | None = None) -> int:
    """This rank's index on its machine: the launcher's when one started it, else ``default``."""
    env = os.environ if env is None else env
    for name in LOCAL_RANK_ENV:
        v = env.get(name)
        if v is not None and v.strip().lstrip("-").isdigit():
            return int(v)
    return int(default)


def rank_device(kind: str, index: int = 0) -> torch.device:
    """The device of a rank whose index on its machine is ``index`` (``kind`` from :func:`resolve`):
    ``cuda:(index mod visible GPUs)``, or the CPU."""
    import torch

    if kind == "cpu":
        return torch.device("cpu")
    if kind != "cuda":
        raise ValueError(f"rank_device: kind={kind!r}: expected cpu or cuda (settled by hdist.devices.resolve)")
    n = torch.cuda.device_count()
    if n == 0:
        raise ConfigError(f"topology.devices=cuda: {_no_gpu_reason()}; allowed here: cpu or auto")
    return torch.device("cuda", int(index) % n)


def cfg_device(cfg: Any, index: int = 0) -> torch.device:
    """:func:`rank_device` for a finalized run config (``topology.devices`` already settled; a config
    written before the key existed runs on the CPU, as it did)."""
    kind = str(cfg.topology.get("devices") or "cpu") if "topology" in cfg else "cpu"
    return rank_device(resolve(kind), index)


def synchronize(device: torch.device | None) -> None:
    """Wait for the work queued on ``device``: a clock read after it counts that work (CUDA kernels run
    asynchronously; without this a timer measures only the launch). Nothing on the CPU."""
    if device is not None and device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def meta(kind: str) -> dict:
    """``meta.json`` fields: the device kind, and on a GPU its name, count and the CUDA, cuDNN and NCCL
    versions torch was built with."""
    out: dict = {"device": kind}
    if kind != "cuda":
        return out
    import torch

    out["gpu_count"] = torch.cuda.device_count()
    out["device_name"] = torch.cuda.get_device_name(0)
    out["cuda_version"] = torch.version.cuda
    out["cudnn_version"] = torch.backends.cudnn.version()
    try:
        nccl = torch.cuda.nccl.version()
        out["nccl_version"] = ".".join(str(p) for p in nccl) if isinstance(nccl, tuple) else str(nccl)
    except (AttributeError, RuntimeError):
        out["nccl_version"] = None
    return out
