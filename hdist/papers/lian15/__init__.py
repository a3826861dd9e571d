"""lian15: Lian, Huang, Li & Liu, "Asynchronous parallel stochastic gradient for nonconvex optimization"
(NIPS 2015), the AsySG-con and AsySG-incon speedup tables; :mod:`.table_incon` reuses :mod:`.table_con`."""
