"""A small, strict NumPy reference implementation of every protocol in :mod:`torchcontract.protocols`."""
