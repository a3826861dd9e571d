"""One MPI rank of a run (backend=mpi).

    python -m hdist.backends.mpi_rank <run_dir> <module:qualname> <run_id> <n_params> <server 0|1>

Started by the launcher that :func:`hdist.backends.mpi.launch` runs (``mpiexec -n N ...``): runs
this rank with :func:`hdist.backends.mpi.run_in_world`, which finds the rank function (a
module-level function, by module and qualified name), reads ``<run_dir>/config.yaml``, builds an
:class:`~hdist.backends.mpi.MPIComm` over ``MPI.COMM_WORLD`` and, on any exception, writes the
rank's error files and calls ``MPI_Abort`` so that no rank waits for it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hdist.backends._supervise import die_with_parent
from hdist.backends.mpi import run_in_world
from hdist.rundir import hold_ranks_lock


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 5:
        print("usage: python -m hdist.backends.mpi_rank RUN_DIR MODULE:QUALNAME RUN_ID N_PARAMS SERVER(0|1)",
              file=sys.stderr)
        raise SystemExit(2)
    run_dir, ref, run_id, n_params, server = args
    die_with_parent()  # a rank never outlives the launcher's proxy that started it
    hold_ranks_lock(Path(run_dir))  # a new owner of the run waits until this rank is gone
    run_in_world(Path(run_dir), ref, "" if run_id == "-" else run_id, int(n_params), server == "1")


if __name__ == "__main__":
    main()
