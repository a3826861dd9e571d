"""kavg18: Zhou & Cong, "On the convergence properties of a K-step averaging stochastic gradient descent
algorithm for nonconvex optimization" (IJCAI 2018), section 4, figures 1-7; shared tables and drawing in
:mod:`.common`, the claim checks in :mod:`.claims`."""
