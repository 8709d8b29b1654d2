"""The engine: what a check is, what it gets, and how checks are run. Its modules, lowest first (each
imports only modules listed before it, and the layers below the engine: ``_values``, ``_runtime``):

- :mod:`.errors`: how a check ends (the exceptions), and the suite's warning; a leaf;
- :mod:`.arguments`: the settings the front-ends take (budgets, devices, world sizes), validated;
  light, as the pytest plugin imports it at every pytest start;
- :mod:`.dtypes`: the names of the dtype matrix (``dtypes=``);
- :mod:`.options`: :class:`~.options.Options`, each option declared once with its validator and docs;
- :mod:`.registry`: the checks as data (``register_check``, ``CHECKS``); it loads the built-in
  checks on first use, the one import of a layer above;
- :mod:`.context`: the check-author API (``Context``, ``SharedKey``, skip reasons): the one module of
  the engine that checks import, with the registry;
- :mod:`.process_group`: running a loader on every rank of a process group;
- :mod:`.isolation`: a target's checks in a forked child (``isolate=True``);
- :mod:`.session`: the runner, one check at a time;
- :mod:`.target`: ``Target`` and ``check()``;
- :mod:`.docs`: README's table of target options, generated from the options.

Importing this package imports nothing: the plugin imports :mod:`.arguments` alone.
"""
