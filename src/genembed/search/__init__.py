"""genembed.search: vectors to answers.

FAISS indexes and their manifest (:mod:`.index`), a whole index folder from its parts
(:mod:`.build`), the traced query encoder (:mod:`.export`), queries by window, locus, genome or
contig (:mod:`.query`, :mod:`.loci`), alignment that verifies loci and calibrates E-values
(:mod:`.align`, :mod:`.banded`, :mod:`.verify`), result files (:mod:`.hits`) and the HTTP server
(:mod:`.serve`). Imports :mod:`genembed.data` and :mod:`genembed.encode`.
"""
