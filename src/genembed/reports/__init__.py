"""Reports: clustering of embeddings and promoter prediction, as self-contained HTML."""
