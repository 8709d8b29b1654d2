"""torchcontract: typed protocols, a specification and a conformance suite for the Python data model
PyTorch is built on.

- :mod:`torchcontract.protocols`: the protocols, for type checkers and ``isinstance``.
- :mod:`torchcontract.conformance`: ``check()``, the pytest plugin and the CLI.
- :mod:`torchcontract.reference_impl`: a small, strict NumPy implementation of the protocols.

Importing this package imports nothing else (the pytest plugin is loaded at every pytest start).
"""
