"""pytest plugin for torchcontract (registered through the ``pytest11`` entry point)."""
