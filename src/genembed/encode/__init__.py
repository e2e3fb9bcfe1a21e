"""genembed.encode: sequence to vectors.

Tokenizers (:mod:`.tokenize`), model loading and fingerprints (:mod:`.models`), genembed's own
encoder (:mod:`.convnet`, :mod:`.kmerbranch`) and its training (:mod:`.tune`), devices and precision
(:mod:`.device`, :mod:`.memory`), batched inference (:mod:`.embed`), one pass along a sequence for
overlapping windows (:mod:`.scan`), shards of windows to HDF5 (:mod:`.shards`), and the run plan
that fixes model, tokenizer, windows and embed settings for every stage (:mod:`.plan`).
Imports :mod:`genembed.data` and nothing else of genembed.
"""
