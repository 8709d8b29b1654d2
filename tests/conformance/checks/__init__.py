"""The tests of the checks, by subject, mirroring ``torchcontract/conformance/checks/``."""
