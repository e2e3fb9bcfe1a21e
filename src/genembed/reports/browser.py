"""A genome-browser view inside a self-contained report page: igv.js and all its data inline, so the
page opens offline and fetches nothing.

igv.js 3.1.4 (MIT, igvteam) is vendored in ``static/igv.min.js``: the build the ``igv-notebook`` wheel on
PyPI ships (npm cannot be reached here). Each locus shown becomes a sequence of its own in a small
reference (its bases from the genome), and every track holds only the loci's stretches, in the
locus's coordinates: a page stays small whatever the genome's size.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass, field
from importlib.resources import files

from genembed.reports import html

IGV_JS = "static/igv.min.js"


@dataclass(frozen=True)
class Locus:
    """A stretch of one contig to show (0-based, half-open) and the button text that opens it."""

    label: str
    contig: str
    start: int
    end: int
    sequence: bytes


@dataclass
class Track:
    """Rows on the genome's contigs: ``(contig, start, end, value)`` for a ``wig`` track, ``(contig,
    start, end, name, score, strand)`` for a ``bed`` track; cut to the loci when shown."""

    name: str
    kind: str  # wig | bed
    rows: list[tuple] = field(default_factory=list)
    color: str = "#1f77b4"


def _data_uri(text: str) -> str:
    return "data:application/gzip;base64," + base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()


def _cut(track: Track, loci: list[Locus], ids: list[str]) -> str:
    """The track's rows that touch each locus, moved to the locus's own sequence, as bedGraph or BED."""
    out = []
    for locus, name in zip(loci, ids):
        for row in track.rows:
            contig, start, end = row[0], int(row[1]), int(row[2])
            if contig != locus.contig or end <= locus.start or start >= locus.end:
                continue
            a, b = max(start, locus.start) - locus.start, min(end, locus.end) - locus.start
            rest = [f"{row[3]:.4g}"] if track.kind == "wig" else [str(v) for v in row[3:6]]
            out.append("\t".join([name, str(a), str(b), *rest]))
    return "\n".join(out) + "\n"


def igv_view(loci: list[Locus], tracks: list[Track], element: str = "igv-view") -> str:
    """An HTML snippet: one igv.js browser over ``loci`` (a button for each) with ``tracks``."""
    if not loci:
        return "<p class='muted'>No locus to show.</p>"
    ids = [f"locus{i + 1}" for i in range(len(loci))]
    fasta = "".join(f">{n}\n{locus.sequence.decode()}\n" for n, locus in zip(ids, loci))
    config = {
        "loadDefaultGenomes": False,
        "reference": {"id": "genembed-loci", "name": "report loci", "fastaURL": _data_uri(fasta), "indexed": False},
        "locus": f"{ids[0]}:1-{len(loci[0].sequence)}",  # a range, not a name: a name goes to igv.org's search
        "tracks": [
            {"name": t.name, "type": "wig" if t.kind == "wig" else "annotation", "format": "bedgraph" if t.kind == "wig" else "bed",
             "url": _data_uri(_cut(t, loci, ids)), "color": t.color,
             **({"min": 0, "max": 1, "autoscale": False} if t.kind == "wig" else {"displayMode": "EXPANDED"})}
            for t in tracks
        ],
    }
    buttons = "".join(f"<button class='igv-locus' data-locus='{n}:1-{len(locus.sequence)}'>{html.esc(locus.label)}</button> "
                      for n, locus in zip(ids, loci))
    script = files("genembed.reports").joinpath(IGV_JS).read_text()
    start = (f"(async()=>{{const b=await igv.createBrowser(document.getElementById('{element}'),{json.dumps(config)});"
             "document.querySelectorAll('button.igv-locus').forEach(x=>x.addEventListener('click',()=>b.search(x.dataset.locus)));"
             f"window.genembedIgv=b;document.getElementById('{element}').dataset.ready='1';}})();")
    return (f"<p>{buttons}</p><div id='{element}' style='min-height:300px'></div>"
            f"<script>{script}</script><script>{start}</script>")
