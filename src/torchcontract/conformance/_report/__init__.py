"""The reporting layer beneath the pytest plugin and the ``torchcontract`` command: what a run's results
mean and how they are shown, decided once for both front-ends.

- :mod:`.outcomes`: the run's policy (strict, allow-empty, xfail_strict), the one vocabulary a result is
  counted and shown in (``passed``, ``failed``, ``warned``, ...), and :class:`~.outcomes.Problem`, one
  reason a target or a run fails.
- :mod:`.baseline`: the TOML baseline file, read and written.
- :mod:`.plan`: the check ids a target knows, how a baseline applies to a target (its entries as
  expected failures, those still ``TODO``, which came from the file), the tables that name no target,
  and what a run writes as a baseline.
- :mod:`.verdict`: the verdict of each target and of the run, with its reasons, and the closing line.
- :mod:`.markdown` and :mod:`.text`: the Markdown summary and the terminal text.

Import direction: the engine produces :mod:`torchcontract.conformance._results` (the one JSON layout)
and knows nothing of this layer; the front-ends (``plugin``, ``cli``) use this layer, which imports
the engine for type annotations only. Light: no NumPy and no engine at import, as the plugin reads a
baseline while pytest configures.
"""
