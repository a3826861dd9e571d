"""thesis: the figures and tables of the thesis' chapters 3 (Dis-dfSDCA: figs. 6-8, Table 2), 4 (large batch:
figs. 9-14), 5 (model parallel, time: figs. 17-23, Table 3; shared in :mod:`.pipeline_time`) and 6 (model
parallel, memory: figs. 26-28, Tables 5-7; shared in :mod:`.pipeline_mem`); ch. 4's helpers in
:mod:`.large_batch`."""
