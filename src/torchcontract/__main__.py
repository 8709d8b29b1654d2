"""``python -m torchcontract``: the ``torchcontract`` command (so ``torchrun -m torchcontract ...`` works)."""

import sys

from torchcontract.conformance.cli import main

if __name__ == "__main__":
    sys.exit(main())
