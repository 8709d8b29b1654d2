"""The tests of the Module checks, mirroring ``torchcontract/conformance/checks/module/``."""
