"""huo17 Figure 4: Distributed-AsySVRG (huo17 Alg. 2-3) on 1..10 workers, simulated t2.micro cluster.

Panels: training loss and test error against time, one line per worker count; running-time
speedup T(1)/T(K) to a common training-loss target against K, with the ideal line
(:mod:`hdist.papers.huo17.common`). On the sim backend time is simulated seconds of the huo17 t2.micro
cost model. Claims (huo17: "when the number of workers increases, our method has a near linear
speedup"): every count reaches a similar loss, more workers take less time, and the time
speedup is >= 0.75 K at every K measured.
"""

from __future__ import annotations

import pandas as pd

from hdist.claims import Claim
from hdist.papers.huo17.common import check_speedup, plot_speedup, speedup_markdown
from hdist.plots import name_claims, run_as

TITLE = "huo17 fig. 4: Distributed-AsySVRG, CIFAR-10 features, MLP 384-50-10, simulated AWS t2.micro cluster"
#: huo17's mini-batch |I_t| and worker counts: titles and claims name those run where they differ.
BATCH, PAPER_WORKERS = 10, range(1, 11)


def plot(df: pd.DataFrame):
    return plot_speedup(df, run_as(df, TITLE, models=(), batch=BATCH, workers=PAPER_WORKERS), unit="workers")


def check(df: pd.DataFrame) -> list[Claim]:
    claims = check_speedup(df, "Distributed-AsySVRG", "fig. 4", unit="workers")
    return name_claims(claims, df, "Distributed-AsySVRG", models=(), batch=BATCH, workers=PAPER_WORKERS)


def tables(df: pd.DataFrame) -> dict[str, str]:
    return {"speedup": speedup_markdown(df, TITLE)}
