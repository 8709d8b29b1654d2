"""How torchcontract touches the object and runs its own processes: the bottom layer of the suite.

- :mod:`.calls`: which call into the object is in progress, per thread (what a hang names, what is
  the object's failure and what torchcontract's own error), abandoned threads, own work;
- :mod:`.lifetime`: every process torchcontract forks ends with the process that forked it;
- :mod:`.compiler_cache`: what ``torch.compile`` and ``torch.export`` leave behind, put back;
- :mod:`.fresh`: torchcontract's fresh interpreter, which rebuilds the object from its pickle as a
  ``spawn`` worker would, and runs the ranks of a process group.

Nothing here imports the rest of the suite (values, engine, checks): the layers above build on it.
"""
