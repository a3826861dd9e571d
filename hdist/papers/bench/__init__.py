"""bench: this project's own benchmarks (the ``bench-*`` stems), written, drawn and checked like any paper's
figure; the two-sided benchmarks' helpers are in :mod:`.common`."""
