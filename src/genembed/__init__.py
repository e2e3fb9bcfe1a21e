"""genembed: genome-scale DNA language-model embeddings, similarity search and reports."""

__version__ = "0.1.0"

#: Version of the on-disk formats (windows Parquet, token arrays, HDF5 shards, index manifest).
SCHEMA_VERSION = 1
