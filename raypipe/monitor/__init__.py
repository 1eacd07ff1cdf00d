"""Monitoring: the training reference profile (``profile``), the pure drift statistics
(``statistics``) and the window report built from them (``drift``), the windowing of the
logged stream (``window``), the prediction log (``log``), the monitor actor (``actor``) and
the replay of labeled rows as live traffic (``replay``).

The submodules are imported by name; the package itself exports nothing.
"""

__all__: list[str] = []
