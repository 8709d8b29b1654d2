"""A map-style dataset as a library might write it, with the bug torchcontract's quick start finds."""


class Squares:
    """The squares of 0, 1, ..., n - 1."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return (index % self.n) ** 2  # the bug: ds[n] wraps around to ds[0] instead of raising IndexError
