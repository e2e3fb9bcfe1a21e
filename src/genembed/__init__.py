"""genembed: genome-scale DNA language-model embeddings, similarity search and reports."""

from genembed.encode.memory import keep_freed_memory as _keep_freed_memory

__version__ = "0.1.0"

#: Version of the on-disk formats (windows Parquet, token arrays, HDF5 shards, index manifest).
SCHEMA_VERSION = 1

_keep_freed_memory()  # before torch is imported (see genembed.encode.memory)
