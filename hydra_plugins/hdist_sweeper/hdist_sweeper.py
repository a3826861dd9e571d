"""HdistSweeper: ``hdist run -m`` sweeps through any Hydra launcher (basic, submitit_local/slurm, joblib).

Hydra finds it in the ``hydra_plugins`` namespace package. Every point is composed and validated here
before anything is launched, points whose run already finished are not launched at all, and each point's
overrides are printed beside its run id and status; ``hdist.sweeps.run_sweep`` does the work.
"""

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class HdistSweeperConf:
    _target_: str = "hydra_plugins.hdist_sweeper.hdist_sweeper.HdistSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="hdist", node=HdistSweeperConf, provider="hdist")


class HdistSweeper(Sweeper):
    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from hdist.sweeps import run_sweep

        assert self.config is not None and self.launcher is not None  # setup() ran: Hydra's contract
        return run_sweep(self.launcher, list(arguments), list(self.config.hydra.overrides.hydra),
                         launcher_name=str(self.config.hydra.launcher._target_))
