"""mylib: a small library of PyTorch data and model objects, and how it tests them with torchcontract.

- ``mylib.data``: ``Sequences`` (map-style, token sequences of varying length), ``NoisyImages``
  (map-style, random augmentation), ``ShardedStream`` (an iterable dataset sharded across workers);
- ``mylib.sampling``: ``LengthGroupedBatchSampler`` (batches of similar lengths, reshuffled by epoch);
- ``mylib.collate``: ``pad_collate`` (pads ``(tokens, label)`` samples into a dict of tensors);
- ``mylib.loader``: ``SequenceLoader`` (a re-iterable loader over ``Sequences``);
- ``mylib.models``: ``BagOfTokens`` (a classifier of padded token batches).
"""
