"""Monitoring: the training reference profile (``profile``), the pure drift, data-quality and
live-performance statistics of a window (``drift``) and the windowing of the logged stream
(``window``); the monitor actors follow."""
