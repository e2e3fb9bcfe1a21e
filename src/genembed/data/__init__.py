"""genembed.data: genomes and the files between stages, no model and no index.

Prepared FASTA (:mod:`.genome`), windows and their k-mer and GC measures (:mod:`.windows`), GFF/GTF
and BED annotation (:mod:`.annotation`), where every file lives (:mod:`.layout`), atomic writes
(:mod:`.io`), the HDF5 embedding shards and stitched files (:mod:`.store`) with the identity that
makes vectors comparable (:mod:`.identity`), genome and contig vectors (:mod:`.vectors`), 2-bit
packed genome copies (:mod:`.packed`) and AnnData export (:mod:`.h5ad`). Imports nothing above it.
"""
