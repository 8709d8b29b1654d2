"""Behavioural conformance checks for the protocols in :mod:`torchcontract.protocols`."""
