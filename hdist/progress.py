"""Progress display: a tqdm bar on a terminal, a plain line every few seconds otherwise.

Algorithms call ``update`` at logging steps (``log.train_every``), so the display costs nothing
measurable; a plain line is printed at most every few seconds, except for runs whose updates are
slower than one a second, which get one per update.
"""

from __future__ import annotations

import math
import sys
import time


class Progress:
    def start(self, total: int | None, unit: str = "step") -> None: ...

    def update(self, step: int, loss: float | None = None, epoch: float | None = None) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...


class QuietProgress(Progress):
    pass


class BarProgress(Progress):
    def __init__(self, desc: str):
        self.desc, self.bar = desc, None

    def start(self, total, unit="step"):
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(total=total, unit=unit, desc=self.desc, dynamic_ncols=True, leave=False,
                        mininterval=0.2, file=sys.stderr)

    def update(self, step, loss=None, epoch=None):
        if self.bar is None:
            return
        self.bar.n = step
        post = {}
        if epoch is not None:
            post["epoch"] = f"{epoch:.2f}"
        if loss is not None:
            post["loss"] = f"{loss:.4g}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.refresh()

    def message(self, text):
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


SHORT = 100  # steps: a run this short gets a plain line at every update


class PlainProgress(Progress):
    """One line every ``every_s`` seconds: for logs, CI and batch jobs."""

    def __init__(self, desc: str, every_s: float = 5.0):
        self.desc, self.every_s = desc, every_s
        self.total, self.unit, self.t0 = None, "step", time.perf_counter()
        self.last, self.last_update = -math.inf, -math.inf

    def start(self, total, unit="step"):
        self.total, self.unit, self.t0, self.last = total, unit, time.perf_counter(), time.perf_counter()
        self.last_update = self.t0

    def update(self, step, loss=None, epoch=None):
        now = time.perf_counter()
        # The first update, the last, every update of a short run (<= SHORT steps) and of a run whose
        # updates come slower than one a second (a big model's steps) get a line: the user sees it move;
        # long fast runs get one every every_s.
        every = now - self.last_update >= 1.0 or (self.total is not None and self.total <= SHORT)
        self.last_update = now
        if not (step <= 1 or step == self.total or every) and now - self.last < self.every_s:
            return
        self.last = now
        rate = step / max(now - self.t0, 1e-9)
        parts = [f"[hdist] {self.desc}", f"step {step}" + (f"/{self.total}" if self.total else "")]
        if self.total:
            eta = (self.total - step) / max(rate, 1e-9)
            parts.append(f"{100 * step / self.total:.0f}%  eta {eta:.0f}s")
        if epoch is not None:
            parts.append(f"epoch {epoch:.2f}")
        if loss is not None:
            parts.append(f"loss {loss:.4g}")
        parts.append(f"{rate:.3g} {self.unit}s/s")
        print("  ".join(parts), file=sys.stderr, flush=True)

    def message(self, text):
        print(text, file=sys.stderr, flush=True)


def make_progress(mode: str, desc: str) -> Progress:
    if mode == "quiet":
        return QuietProgress()
    if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
        return BarProgress(desc)
    return PlainProgress(desc)
