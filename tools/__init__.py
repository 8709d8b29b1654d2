"""Tools for working on torchcontract (not part of the package): the docs' generated blocks and site hooks."""
