"""``genembed serve``: a query service over one index (FastAPI + uvicorn, loopback by default). The
index and its query encoder load once; ``POST /api/search`` takes a sequence, FASTA text or a region
and returns loci as JSON; ``GET /`` is a small page to paste a sequence and sort the loci. A bad
request gets HTTP 4xx with a one-line ``detail``; no request reads a file: genomes are looked up by
name in the index manifest, and the sequences come from the copies inside the index folder. With
``workers`` > 1, that many processes each open the index and answer requests side by side."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from starlette.requests import Request  # module level: FastAPI resolves the endpoints' annotations here

from genembed.errors import GenembedError, one_line
from genembed.encode.memory import release_freed_memory
from genembed.search.index import read_manifest
from genembed.search.query import Index, LocusSearch

log = logging.getLogger(__name__)
RELEASE_AFTER_BP = 100_000  # after a request this large, freed memory goes back to the system
BATCH_BP = 100_000  # a request's queries are searched this much at a time; a client gone stops it between batches
MAX_QUERY_BP = 1_000_000  # per request: about 20 s on 2 cores, so no request holds a worker for minutes
WORKER_ENV = "GENEMBED_SERVE"  # what a worker process opens: {"index", "model", "log_level"} as JSON


class SearchRequest(BaseModel):
    """One of ``sequence``, ``fasta`` (FASTA text) or ``region`` (GENOME:CONTIG:START-END)."""

    sequence: str | None = None
    fasta: str | None = None
    region: str | None = None
    k: int = Field(10, ge=1, le=1000)
    genomes: list[str] | None = None
    strand: Literal["both", "forward"] = "both"
    windows: bool = False
    level: Literal["window", "genome", "contig"] = "window"  # genome / contig: the nearest whole genomes or contigs
    exclude_self: bool = False
    verify: bool = True  # align the candidate loci (else ranked by the embedding alone)
    strict: bool = False  # refuse the request when any FASTA record cannot be searched (else skip it)


def create_app(index: Index):
    """The web application over an open index."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse

    import polars as pl

    from genembed.search.hits import fasta_records
    from genembed.search.query import Region

    app = FastAPI(title="genembed", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()  # one search at a time: the model and the genome readers are shared
    settings = index.manifest["settings"]

    where = [str(index.dir.resolve()), str(index.dir)]  # the server's own paths are not the client's business

    @app.exception_handler(GenembedError)
    async def refused(request: Request, exc: GenembedError):
        detail = str(exc).splitlines()[0]
        for path in where:
            detail = detail.replace(path, "index")
        return JSONResponse({"detail": detail}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"detail": f"{where or 'request'}: {first.get('msg', 'invalid')}".splitlines()[0]},
                            status_code=422)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception):
        log.exception("request failed")
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/api/info")
    def info() -> dict:
        return {"genomes": sorted(index.manifest["genomes"]), "model": index.manifest.plan.source,
                "windows": index.manifest["index"]["count"], "window_size": int(settings["window_size"]),
                "window_stride": int(settings["window_stride"]), "pid": os.getpid()}

    @app.post("/api/search")
    async def search(req: SearchRequest, request: Request) -> dict:
        """The loci of one request, computed in batches of about BATCH_BP (one at a time per worker);
        a client that disconnects stops its request at the next batch."""
        from starlette.concurrency import run_in_threadpool

        given = [x for x in (req.sequence, req.fasta, req.region) if x]
        if len(given) != 1:
            raise GenembedError("give exactly one of sequence, fasta or region")
        if req.exclude_self and not req.region:
            raise GenembedError("exclude_self needs a region (a sequence has no region of its own)")
        if sum(len(x) for x in given) > 2 * MAX_QUERY_BP:
            raise GenembedError(f"the request holds more than {MAX_QUERY_BP:,} bp; split it")

        def locked(work):
            with lock:
                return work()

        how = LocusSearch(req.k, req.genomes, req.strand, req.windows, req.verify)

        skipped: list[dict] = []
        if req.region:
            region = Region.parse(req.region)
            bp = region.end - region.start
            if bp > MAX_QUERY_BP:
                raise GenembedError(f"region {region}: longer than {MAX_QUERY_BP:,} bp")
        else:
            queries = dict(fasta_records(req.fasta.encode().splitlines(), "fasta")) if req.fasta else \
                {"query": "".join(req.sequence.split()).upper().encode()}
            bp = sum(len(q) for q in queries.values())
            if bp > MAX_QUERY_BP:
                raise GenembedError(f"the request holds {bp:,} bp, more than {MAX_QUERY_BP:,}; split it")
            queries, skipped = index.screen(queries, req.strict)
        if req.level != "window":  # the nearest genomes or contigs of each whole query (Index.search_level)
            if req.region:
                queries = {str(region): index.fetch(region)}
            hits = await run_in_threadpool(locked, lambda: index.search_level(queries, req.level, req.k, req.genomes))
            return {"columns": hits.columns, "rows": hits.rows(), "skipped": skipped}
        if req.region:
            hits = await run_in_threadpool(locked, lambda: index.search_region(
                region, how, req.exclude_self))
        else:
            parts = []
            for batch in _batches(queries, BATCH_BP):
                if await request.is_disconnected():
                    log.warning("client gone: request of %d bp stopped after %d of %d queries", bp,
                                sum(p.select("query").n_unique() for p in parts), len(queries))
                    break
                parts.append(await run_in_threadpool(locked, lambda b=batch: index.search_loci(
                    b, how)))
            if not parts:  # the client left before the first batch
                return {"columns": [], "rows": [], "skipped": skipped}
            hits = pl.concat(parts, how="vertical_relaxed")
        if bp > RELEASE_AFTER_BP:
            release_freed_memory()  # a large request does not leave the worker at its peak size
        for bad in skipped:
            log.warning("query %r skipped: %s", bad["query"], bad["reason"])
        hits = hits.with_columns(pl.col(pl.Float32, pl.Float64).fill_nan(None))  # JSON has no NaN (E-values of old indexes)
        return {"columns": hits.columns, "rows": hits.rows(), "skipped": skipped}

    return app


def _batches(queries: dict[str, bytes], size: int):
    """Queries in dicts of about ``size`` bp (a longer query alone)."""
    batch: dict[str, bytes] = {}
    total = 0
    for name, seq in queries.items():
        if batch and total + len(seq) > size:
            yield batch
            batch, total = {}, 0
        batch[name] = seq
        total += len(seq)
    if batch:
        yield batch


def open_index(index_dir: str | os.PathLike, model: str | None = None) -> Index:
    """The index with its encoder loaded and warmed up (one embedding)."""
    index = Index.open(index_dir, model)
    index.encoder.strand_invariant()
    return index


def worker_app():
    """The application of one ``serve --workers`` process (a uvicorn app factory): opens the index
    named in ``$GENEMBED_SERVE``; a bad index is one line, and an exit that stops the other workers."""
    from uvicorn.config import STARTUP_FAILURE

    from tqdm import tqdm

    spec = json.loads(os.environ[WORKER_ENV])
    logging.basicConfig(level=spec["log_level"], format="%(asctime)s %(name)s %(message)s")
    tqdm.set_lock(threading.RLock())  # not its default semaphore, which a worker stopped by SIGTERM leaves behind
    try:
        return create_app(open_index(spec["index"], spec["model"]))
    except (GenembedError, OSError) as exc:
        print(f"genembed: error: {one_line(exc)}", file=sys.stderr, flush=True)
        os._exit(STARTUP_FAILURE)  # at once: a slow interpreter exit would leave the supervisor's ping unanswered


def serve(index_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, model: str | None = None,
          workers: int = 1) -> None:
    """Open the index, warm its encoder up, and serve until interrupted; ``workers`` processes, each
    with its own copy of the index and encoder, answer requests side by side."""
    import uvicorn

    if workers < 1:
        raise GenembedError(f"--workers must be at least 1, not {workers}")
    _check_address(host, port)
    if workers == 1:
        index = open_index(index_dir, model)
        print(f"genembed: serving {index_dir} at http://{host}:{port}/", flush=True)
        uvicorn.run(create_app(index), host=host, port=port, log_level="warning")
        return
    # Workers are uvicorn's: processes started fresh (spawn) that share the listening socket, each
    # opening the index itself. Forking one loaded process instead would share memory, but the
    # encoder's thread pools (OpenMP, torch) do not survive a fork, and one process with threads
    # would run its Python parts (chaining, tables) one at a time. The supervisor stays small (no
    # model), restarts a worker that dies, and stops them all on SIGTERM or Ctrl-C.
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    read_manifest(index_dir)  # not an index: one line before any worker starts
    os.environ[WORKER_ENV] = json.dumps({"index": str(Path(index_dir).resolve()), "model": model,
                                         "log_level": logging.getLogger().getEffectiveLevel()})
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // workers)))  # the cores shared, not each taking all
    config = uvicorn.Config("genembed.search.serve:worker_app", factory=True, host=host, port=port, workers=workers,
                            log_level="warning", timeout_worker_healthcheck=60)  # a worker loading torch answers late
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    print(f"genembed: serving {index_dir} at http://{host}:{port}/ ({workers} workers)", flush=True)
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise GenembedError(f"{index_dir}: the server stopped: a worker could not start")


def _check_address(host: str, port: int) -> None:
    """Refuse, in one line before anything is loaded, an address the server cannot listen on (a port
    in use, a host that is not this machine's)."""
    import socket

    if not 0 < port < 65536:
        raise GenembedError(f"--port {port}: not a port (1-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(infos[0][4])
    except OSError as exc:
        raise GenembedError(f"{host}:{port}: cannot serve there ({exc.strerror or exc})") from None


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>genembed search</title><link rel="icon" href="data:,">
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}textarea{width:100%;height:8em;font-family:monospace}
label{margin-right:1em}table{border-collapse:collapse;margin-top:1em;font-size:14px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{cursor:pointer;background:#f3f3f3}
td.t{text-align:left;font-family:monospace}#error{color:#b00020;margin-top:1em}#status{color:#555}
td.ok{color:#1b7f2a;font-family:system-ui,sans-serif}td.no{color:#777;font-family:system-ui,sans-serif}#skipped{color:#8a5a00}
</style></head><body>
<h1>genembed search</h1>
<p id="about">Loading the index&hellip;</p>
<form id="form">
<p><textarea id="sequence" placeholder="Paste a DNA sequence or FASTA records"></textarea></p>
<p><label>or region <input id="region" size="40" placeholder="GENOME:CONTIG:START-END (0-based)"></label></p>
<p><label>loci per query <input id="k" type="number" value="10" min="1" max="1000"></label>
<label>strand <select id="strand"><option>both</option><option>forward</option></select></label>
<label>find <select id="level"><option value="window">loci</option><option value="genome">nearest genomes</option><option value="contig">nearest contigs</option></select></label>
<label>genomes <input id="genomes" size="30" placeholder="all (or names, comma-separated)"></label>
<button id="go" type="submit">Search</button> <span id="status"></span></p>
</form>
<div id="error"></div><div id="skipped"></div>
<table id="loci"><thead></thead><tbody></tbody></table>
<script>
const $ = id => document.getElementById(id);
fetch("api/info").then(r => r.json()).then(i => {
  $("about").textContent = `${i.windows.toLocaleString()} windows of ${i.window_size} bp (every ${i.window_stride} bp) from `
    + `${i.genomes.length} genome(s): ${i.genomes.join(", ")}; model ${i.model}.`;
});
let rows = [], columns = [], order = {};
const esc = v => String(v).replace(/[&<>"]/g, ch => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[ch]);
function cell(name, v) {  // [text, class, title] of one value of a column
  if (name === "verified") return v ? ["\u2713 aligned", "ok", "an alignment confirmed the locus"] : ["embedding only", "no", "not confirmed by an alignment"];
  if (name === "identity") return [v === null ? "" : `${(100 * v).toFixed(1)}%`, "", ""];
  if (name === "cigar" && v !== null && String(v).length > 20) return [String(v).slice(0, 20) + "\u2026", "t", String(v)];
  if (v === null) return ["", "", ""];
  if (typeof v !== "number") return [v, "t", ""];
  return [Number.isInteger(v) ? v : Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(2) : v.toFixed(4), "", ""];
}
function render() {
  const loci = columns.includes("start");  // genome and contig answers have no coordinates
  const head = loci ? columns.concat(["locus (1-based)"]) : columns;
  $("loci").tHead.innerHTML = "<tr>" + head.map((c, i) => `<th data-i="${i}">${esc(c)}</th>`).join("") + "</tr>";
  const at = name => columns.indexOf(name);
  $("loci").tBodies[0].innerHTML = rows.map(r => {
    const cells = loci ? r.concat([`${r[at("contig")]}:${r[at("start")] + 1}-${r[at("end")]}`]) : r;
    return "<tr>" + cells.map((v, i) => {
      const [text, cls, title] = cell(head[i], v);
      return `<td class="${cls}"${title ? ` title="${esc(title)}"` : ""}>${esc(text)}</td>`;
    }).join("") + "</tr>";
  }).join("");
  for (const th of $("loci").tHead.rows[0].cells) th.onclick = () => sortBy(+th.dataset.i);
}
function sortBy(i) {
  order[i] = !order[i];
  const key = r => i < columns.length ? r[i] : `${r[columns.indexOf("contig")]}:${String(r[columns.indexOf("start")]).padStart(12, "0")}`;
  rows.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0) * (order[i] ? 1 : -1));
  render();
}
$("form").onsubmit = async ev => {
  ev.preventDefault();
  $("error").textContent = ""; $("skipped").textContent = ""; $("status").textContent = "searching...";
  const text = $("sequence").value.trim(), region = $("region").value.trim();
  const body = {k: +$("k").value, strand: $("strand").value, level: $("level").value};
  if (region) body.region = region; else if (text.startsWith(">")) body.fasta = text; else body.sequence = text;
  const genomes = $("genomes").value.split(",").map(s => s.trim()).filter(Boolean);
  if (genomes.length) body.genomes = genomes;
  const t0 = performance.now();
  const r = await fetch("api/search", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const out = await r.json();
  if (!r.ok) { $("error").textContent = out.detail; $("status").textContent = ""; rows = []; columns = []; render(); return; }
  columns = out.columns; rows = out.rows; order = {}; render();
  if (out.skipped && out.skipped.length) $("skipped").textContent = `skipped ${out.skipped.length} record(s): `
    + out.skipped.map(x => `${x.query} (${x.reason})`).join("; ");
  const what = {window: "loci", genome: "genomes", contig: "contigs"}[body.level];
  $("status").textContent = `${rows.length} ${what} in ${Math.round(performance.now() - t0)} ms`;
};
</script></body></html>
"""
