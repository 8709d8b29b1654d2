"""The targets of ``torchcontract report``, and the table of torch's documented deviations.

- :mod:`.deviations`: the documented deviations of torch's own classes (SPEC.md's **Deviation.**
  paragraphs, README's table and the expected failures of torch's targets all follow it);
- :mod:`.defaults`: the reference implementation's targets, on the bundled MNIST sample, and
  torch's when it is installed;
- :mod:`.torch_targets`: torch's and torchvision's targets (imported only with torch).

The one layer of the suite that imports :mod:`torchcontract.reference_impl`: the engine and the
checks never do (a test of the import graph holds them to it).
"""
