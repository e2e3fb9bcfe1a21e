"""genembed.reports: what the embeddings are good for, as self-contained HTML and tables.

Clustering of windows and the genome level (:mod:`.clusters`, :mod:`.compare`), the promoter report (the
window probe :mod:`.promoters`, the stranded CNN :mod:`.stranded` / :mod:`.supervised`, tracks and the
browser view :mod:`.tracks` / :mod:`.browser`, inputs :mod:`.inputs`), the embeddings' evaluation
(:mod:`.evaluate`), block-bootstrap statistics (:mod:`.stats`) and HTML (:mod:`.html`). Imports
:mod:`genembed.data`, :mod:`genembed.encode` and :mod:`genembed.search`.
"""
