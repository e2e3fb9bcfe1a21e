"""The promoter track's windows embedded with a run's windows in one pass, against the two apart.

On a stretch of the bundled E. coli genome, with the bundled model (bf16 where the CPU has it),
in one process:

(a) the run's windows alone (500 bp every 250 bp): one pass along the sequence plus their edges;
(b) the promoter track's windows alone (every 100 bp), as a report scanning on its own does;
(c) both together, as a pack's job does (:func:`genembed.encode.scan.scan_with_track`'s pass);

each with the windows' edges computed as a trapezoid (``edge_states``: each layer only where an
edge depends on it) and, for comparison, as whole ``2 * receptive_field`` rows. It prints seconds,
the speed-up of (c) over (a) + (b) and of trapezoid edges over whole rows, and checks that (c) gives
the vectors of (a) and (b). Not a test: it prints numbers.

    .venv/bin/python benchmarks/track_pass.py [--mbp 1.0] [--repeats 2]
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
from genembed.encode.scan import Scanner

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mbp", type=float, default=1.0, help="Mbp of E. coli scanned")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each variant (the fastest is reported)")
    args = ap.parse_args()

    import torch

    import yaml

    from genembed.encode.models import ModelSpec
    from genembed.encode.plan import RunPlan
    from genembed.encode.scan import window_means
    from genembed.encode.tokenize import TokenizerSpec

    torch.set_num_threads(2)
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())  # the default config's plan
    plan = RunPlan.make(ModelSpec(str(REPO / cfg["model"]["path"])), TokenizerSpec.from_config(cfg["tokenizer"]),
                        cfg["windows"])
    scan = Scanner.for_plan(plan)
    embedder, r = scan.embedder, scan.reach
    with gzip.open(REPO / "resources/example/ecoli_k12_mg1655.fna.gz", "rb") as fh:
        block = b"".join(fh.read().split(b"\n")[1:])[: int(args.mbp * 1e6)]
    ids = scan.tokenizer.encode_batch([block])[0].astype(np.int64)
    size, n = 500, len(ids)
    run, track = np.arange(0, n - size + 1, 250), np.arange(0, n - size + 1, 100)
    both = np.union1d(run, track)

    def timed(starts: np.ndarray) -> tuple[float, np.ndarray]:
        best, out = float("inf"), None
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = window_means(embedder, r, ids, starts, size)
            best = min(best, time.perf_counter() - t)
        return best, out

    window_means(embedder, r, ids[:20_000], run[run < 19_500], size)  # warm-up: first-call costs out of the timings
    print(f"{len(block) / 1e6:.2f} Mbp of E. coli, {embedder.precision}, {torch.get_num_threads()} threads; "
          f"{len(run)} run windows, {len(track)} track windows")
    results = {}
    for edges in ("trapezoid", "whole rows"):
        if edges == "whole rows":  # the instance attribute hides the method: every layer on the whole row
            embedder.model.edge_states = whole_rows(embedder.model)
        t_run, v_run = timed(run)
        t_track, v_track = timed(track)
        t_both, v_both = timed(both)
        at = {s: i for i, s in enumerate(both)}
        for starts, v in ((run, v_run), (track, v_track)):
            got = v_both[[at[s] for s in starts]]
            cos = (got * v).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(v, axis=1)
            assert cos.min() > 0.9999, f"the shared pass differs: min cosine {cos.min()}"
        results[edges] = (t_run, t_track, t_both)
        print(f"  edges as {edges:10s}: (a) run {t_run:5.2f} s  (b) track {t_track:5.2f} s  (c) both {t_both:5.2f} s"
              f"  -> (a)+(b) / (c) = {(t_run + t_track) / t_both:.2f}x")
    trap, whole = results["trapezoid"], results["whole rows"]
    print(f"trapezoid edges against whole rows: (c) {whole[2] / trap[2]:.2f}x faster; "
          f"with both changes, (c) against (a)+(b) with whole rows: {(whole[0] + whole[1]) / trap[2]:.2f}x")


def whole_rows(model):
    """``edge_states`` computed the plain way: the whole ``2 * reach`` row through every layer."""
    def edge_states(ids, width, left, layer=-1):
        states = model(ids, output_hidden_states=layer != -1)
        h = states.last_hidden_state if layer == -1 else states.hidden_states[layer]
        return h[:, :width] if left else h[:, -width:]

    return edge_states


if __name__ == "__main__":
    main()
