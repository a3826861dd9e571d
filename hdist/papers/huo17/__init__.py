"""huo17: Huo & Huang, "Asynchronous mini-batch gradient descent with variance reduction for non-convex
optimization" (AAAI 2017; the thesis' ch. 2), figures 1-4; shared drawing and claims in :mod:`.common`."""
