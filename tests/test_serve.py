"""`genembed serve`: the query service, run for real (uvicorn in a subprocess on loopback) over the
default-config index, spoken to by a real HTTP client and its page opened in headless Chromium."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import browser_missing

CONTIG = "NC_000913.3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(index_dir, log, *options) -> dict:
    """``genembed serve`` in a subprocess on a free loopback port, its output in ``log``, once it answers."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "genembed.run.cli", "serve", "--index", str(index_dir),
                             "--port", str(port), *options], stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/info", timeout=5).read()
            break
        except OSError:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
    return {"url": url, "port": port, "proc": proc, "log": log}


def _stop(server) -> None:
    import psutil

    proc = server["proc"]
    if proc.poll() is not None:
        return
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        for p in workers + [psutil.Process(proc.pid)]:  # only the processes this test started
            p.kill()
        proc.wait(30)


@pytest.fixture(scope="module")
def server(default_index, tmp_path_factory):
    s = _start(default_index["dir"], tmp_path_factory.mktemp("serve") / "server.log")
    yield s
    _stop(s)


@pytest.fixture(scope="module")
def two_workers(default_index, tmp_path_factory):
    s = _start(default_index["dir"], tmp_path_factory.mktemp("serve") / "workers.log", "--workers", "2")
    yield s
    _stop(s)


def call(server, body, path="/api/search", timeout: float = 60) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(server["url"] + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def loci(reply: dict) -> list[dict]:
    return [dict(zip(reply["columns"], row)) for row in reply["rows"]]


def test_the_api_answers_regions_sequences_and_fasta_text(server, ecoli_sequence):
    status, reply = call(server, {"region": f"eco:{CONTIG}:40000-45000", "k": 3})
    top = loci(reply)[0]
    assert status == 200 and (top["start"], top["end"], top["strand"], top["rank"]) == (40_000, 45_000, "+", 1)
    fasta = f">a\n{ecoli_sequence[5000:6000].decode()}\n>b\n{ecoli_sequence[9000:9500].decode()}\n"
    status, reply = call(server, {"fasta": fasta, "k": 1, "strand": "forward"})
    assert status == 200 and [(h["query"], h["start"]) for h in loci(reply)] == [("a", 5000), ("b", 9000)]
    assert reply["skipped"] == [] and all(h["verified"] and h["identity"] == 1.0 for h in loci(reply))
    status, reply = call(server, {"fasta": fasta, "k": 1, "verify": False})  # the embedding's ranking alone
    assert status == 200 and [(h["query"], h["start"], h["verified"]) for h in loci(reply)] == \
        [("a", 5000, False), ("b", 9000, False)]
    status, reply = call(server, {"sequence": ecoli_sequence[9000:9500].decode().lower(), "k": 2, "windows": True})
    assert status == 200 and reply["columns"][:3] == ["query", "query_start", "query_end"]
    with urllib.request.urlopen(server["url"] + "/api/info") as r:
        info = json.loads(r.read())
    assert info["genomes"] == ["eco"] and info["window_size"] == 500 and info["windows"] == 799
    assert info["pid"] == server["proc"].pid  # one process: the server itself answers
    for level in ("genome", "contig"):  # the nearest whole genomes / contigs (one of each in this index)
        status, reply = call(server, {"region": f"eco:{CONTIG}:40000-45000", "level": level, "k": 2})
        assert status == 200 and [(h["level"], h["genome"], h["rank"]) for h in loci(reply)] == [(level, "eco", 1)]
    status, reply = call(server, {"sequence": "ACGT" * 200, "level": "strain"})
    assert status == 422 and "level" in reply["detail"]


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 422, "JSON decode error"),
    ({}, 400, "give exactly one of sequence, fasta or region"),
    ({"sequence": "ACGT" * 200, "region": f"eco:{CONTIG}:0-500"}, 400, "exactly one"),
    ({"sequence": "ACGTU"}, 400, "not IUPAC nucleotides: 'U'"),
    ({"sequence": "ACGT" * 200, "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ({"sequence": "ACGT" * 200, "k": 10**6}, 422, "k: Input should be less than or equal to 1000"),
    ({"sequence": "ACGT" * 200, "strand": "sideways"}, 422, "strand: Input should be 'both' or 'forward'"),
    ({"sequence": "ACGT" * 200, "genomes": ["../../etc"]}, 400, "genome ../../etc is not in this index"),
    ({"region": "../../../../etc/passwd:x:0-10"}, 400, "genome '../../../../etc/passwd' is not in this index"),
    ({"region": "eco:../genomes/eco/genome.fa.gz:0-10"}, 400, "unknown contig '../genomes/eco/genome.fa.gz'"),
    ({"region": f"eco:{CONTIG}:0-999999999"}, 400, "longer than 1,000,000 bp"),
    ({"sequence": "ACGT" * 200, "exclude_self": True}, 400, "exclude_self needs a region"),
    ({"sequence": "ACGT" * 300_000}, 400, "the request holds 1,200,000 bp, more than 1,000,000; split it"),
    ({"region": f"eco:nope:0-500"}, 400, "index/genomes/eco/genome.fa.gz: unknown contig 'nope'"),
    ({"region": f"eco:{CONTIG}:199000-201000"}, 400, "outside 0-200000"),
    ({"fasta": "ACGT\n"}, 400, "sequence before the first '>' header"),
    ({"sequence": "N" * 600}, 400, "query 'query': no A, C, G or T"),
    ({"fasta": ">x\n" + "N" * 600 + "\n>y\nACGU\n"}, 400,
     "query 'x': no A, C, G or T (only N or other ambiguity codes): nothing to search for (2 of 2 records cannot"),
    ({"fasta": ">ok\n" + "ACGT" * 200 + "\n>y\nACGU\n", "strict": True}, 400,
     "query 'y': characters that are not IUPAC nucleotides: 'U' (1 of 2 records cannot be searched)"),
])
def test_bad_requests_get_a_4xx_with_one_line_and_the_server_stays_up(server, body, status, message, tmp_path):
    got, reply = call(server, body)
    assert got == status and message in reply["detail"] and "\n" not in reply["detail"], reply
    assert "/tmp" not in reply["detail"]  # no path of the server's
    assert call(server, {"region": f"eco:{CONTIG}:0-500", "k": 1})[0] == 200


def test_a_batch_skips_its_bad_records_answers_the_rest_and_logs_each(server, ecoli_sequence):
    good = {"a": ecoli_sequence[20000:21000], "b": ecoli_sequence[70000:70800]}
    fasta = (f">a\n{good['a'].decode()}\n>gap\n{'N' * 700}\n>rna\n{good['b'][:300].decode().replace('T', 'U')}\n"
             f">b\n{good['b'].decode()}\n>empty\n")
    status, reply = call(server, {"fasta": fasta, "k": 1, "strand": "forward"})
    assert status == 200 and [(h["query"], h["start"]) for h in loci(reply)] == [("a", 20000), ("b", 70000)]
    assert reply["skipped"] == [
        {"query": "gap", "reason": "no A, C, G or T (only N or other ambiguity codes): nothing to search for"},
        {"query": "rna", "reason": "characters that are not IUPAC nucleotides: 'U'"},
        {"query": "empty", "reason": "empty sequence"}]
    deadline = time.monotonic() + 10
    while "'empty' skipped" not in server["log"].read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    warned = [line for line in server["log"].read_text().splitlines() if " skipped: " in line]
    assert [line.split(" genembed.search.serve ")[1] for line in warned] == [
        "query 'gap' skipped: no A, C, G or T (only N or other ambiguity codes): nothing to search for",
        "query 'rna' skipped: characters that are not IUPAC nucleotides: 'U'",
        "query 'empty' skipped: empty sequence"]
    status, reply = call(server, {"fasta": fasta, "k": 1, "strict": True})
    assert status == 400 and reply["detail"] == ("query 'gap': no A, C, G or T (only N or other ambiguity codes):"
                                                 " nothing to search for (3 of 5 records cannot be searched)")


def test_no_request_reads_a_file_outside_the_api(server):
    for path in ("/../../../../etc/passwd", "/genomes/eco/genome.fa.gz", "/manifest.json", "/%2e%2e/%2e%2e/etc/passwd"):
        try:
            urllib.request.urlopen(server["url"] + path, timeout=10)
            pytest.fail(f"{path} was served")
        except urllib.error.HTTPError as e:
            assert e.code == 404


def test_the_server_listens_on_loopback_only(server):
    listening = []
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port = local.split(":")
        if int(port, 16) == server["port"] and state == "0A":  # LISTEN
            listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1


def test_eight_concurrent_clients_all_get_answers(server, ecoli_sequence):
    def one(i: int) -> tuple[int, int]:
        status, reply = call(server, {"sequence": ecoli_sequence[i * 5000 : i * 5000 + 1000].decode(), "k": 1})
        return status, loci(reply)[0]["start"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(32)))
    assert results == [(200, i * 5000) for i in range(32)]


def test_two_workers_answer_side_by_side(two_workers, ecoli_sequence):
    import psutil

    children = {p.pid for p in psutil.Process(two_workers["proc"].pid).children()}

    def pid(_) -> int:
        with urllib.request.urlopen(two_workers["url"] + "/api/info", timeout=60) as r:
            return json.loads(r.read())["pid"]

    seen: set[int] = set()
    deadline = time.monotonic() + 120  # the second worker may still be loading its index on a busy machine
    with ThreadPoolExecutor(8) as pool:
        while len(seen) < 2 and time.monotonic() < deadline:
            seen |= set(pool.map(pid, range(8)))
            time.sleep(0.1)
    assert len(seen) == 2 and seen <= children  # two processes of the server answer, each its own index

    def one(i: int) -> tuple[int, int]:
        status, reply = call(two_workers, {"sequence": ecoli_sequence[i * 5000 : i * 5000 + 1000].decode(), "k": 1})
        return status, loci(reply)[0]["start"]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(32))) == [(200, i * 5000) for i in range(32)]

    # while one worker embeds a 100-kb query, short ones are answered: one process would hold them
    # behind its lock until the long one is done
    long_done = []

    def long() -> None:
        status, reply = call(two_workers, {"sequence": ecoli_sequence[:100_000].decode(), "k": 1})
        long_done.append(time.monotonic())
        assert status == 200 and (loci(reply)[0]["start"], loci(reply)[0]["end"]) == (0, 100_000)

    def short(i: int) -> list[float]:
        done = []
        while not long_done:
            try:
                status, reply = call(two_workers, {"sequence": ecoli_sequence[i * 9000 : i * 9000 + 500].decode(), "k": 1},
                                     timeout=1)
                assert status == 200 and loci(reply)[0]["start"] == i * 9000
                done.append(time.monotonic())
            except (TimeoutError, urllib.error.URLError):  # queued behind the long query in its worker; ask again
                pass
        return done

    with ThreadPoolExecutor(9) as pool:
        started = time.monotonic()
        slow = pool.submit(long)
        time.sleep(0.3)
        answered = [t for times in pool.map(short, range(8)) for t in times]
        slow.result()
    assert any(t < long_done[0] for t in answered), f"the long query took {long_done[0] - started:.1f} s"


def test_the_workers_stop_with_the_server(two_workers):
    import psutil

    children = psutil.Process(two_workers["proc"].pid).children(recursive=True)
    assert len(children) >= 2
    two_workers["proc"].terminate()
    assert two_workers["proc"].wait(30) is not None
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, alive


def test_workers_that_cannot_open_the_index_stop_the_server_with_one_line(default_index, tmp_path):
    import shutil

    broken = tmp_path / "index"
    shutil.copytree(default_index["dir"], broken)
    (broken / "index.faiss").write_bytes((broken / "index.faiss").read_bytes()[:100])
    run = subprocess.run([sys.executable, "-m", "genembed.run.cli", "serve", "--index", str(broken), "--port",
                          str(_free_port()), "--workers", "2"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "corrupt or unreadable FAISS index" in run.stderr, run.stderr
    assert run.stderr.splitlines()[-1] == f"genembed: error: {broken}: the server stopped: a worker could not start"


def test_a_port_in_use_is_one_line_before_anything_loads(default_index):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "genembed.run.cli", "serve", "--index", str(default_index["dir"]),
                              "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stdout == "", run.stdout
    assert run.stderr == f"genembed: error: 127.0.0.1:{port}: cannot serve there (Address already in use)\n", run.stderr


@pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
def test_the_page_searches_a_region_and_sorts_the_loci_in_chromium(server, browser, ecoli_sequence):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")
    browser.get(server["url"] + "/")
    WebDriverWait(browser, 30).until(lambda d: "windows of 500 bp" in d.find_element(By.ID, "about").text)
    browser.find_element(By.ID, "region").send_keys(f"eco:{CONTIG}:60000-62000")
    browser.find_element(By.ID, "k").clear()
    browser.find_element(By.ID, "k").send_keys("5")
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#loci tbody tr")) > 0)
    rows = browser.find_elements(By.CSS_SELECTOR, "#loci tbody tr")
    assert rows[0].find_elements(By.TAG_NAME, "td")[-1].text == f"{CONTIG}:60001-62000"  # for a genome browser
    headers = browser.find_elements(By.CSS_SELECTOR, "#loci thead th")
    shown = "return [...document.querySelectorAll('#loci tbody tr')].map(r => [r.cells[arguments[0]].innerText, r.cells[arguments[0]].title])"
    api = loci(call(server, {"region": f"eco:{CONTIG}:60000-62000", "k": 5})[1])
    names = [h.text for h in headers]
    # the loci's alignment columns: the mark, the identity and the cigar
    marks = [text for text, _ in browser.execute_script(shown, names.index("verified"))]
    assert marks == ["\u2713 aligned" if h["verified"] else "embedding only" for h in api] and marks[0] == "\u2713 aligned"
    identity = [text for text, _ in browser.execute_script(shown, names.index("identity"))]
    assert identity == ["" if h["identity"] is None else f"{100 * h['identity']:.1f}%" for h in api]
    assert identity[0] == "100.0%"  # the region itself
    cigars = browser.execute_script(shown, names.index("cigar"))
    assert cigars == [[h["cigar"][:20] + "\u2026", h["cigar"]] if len(h["cigar"] or "") > 20 else [h["cigar"] or "", ""]
                      for h in api]
    score = [h.text for h in headers].index("score")
    column = "return [...document.querySelectorAll('#loci tbody tr')].map(r => +r.cells[arguments[0]].innerText)"
    headers[score].click()
    ascending = browser.execute_script(column, score)
    assert ascending == sorted(ascending) and len(ascending) >= 2
    browser.find_elements(By.CSS_SELECTOR, "#loci thead th")[score].click()
    assert browser.execute_script(column, score) == sorted(ascending, reverse=True)
    browser.find_element(By.ID, "region").clear()
    browser.find_element(By.ID, "region").send_keys("nope:chr:1-2")
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 30).until(lambda d: "not in this index" in d.find_element(By.ID, "error").text)
    browser.find_element(By.ID, "region").clear()
    browser.find_element(By.ID, "sequence").send_keys(f">ok\n{ecoli_sequence[30000:31000].decode()}\n>gap\n{'N' * 600}\n")
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 60).until(lambda d: "skipped 1 record(s): gap (no A, C, G or T" in d.find_element(By.ID, "skipped").text)
    assert browser.find_elements(By.CSS_SELECTOR, "#loci tbody tr")[0].find_elements(By.TAG_NAME, "td")[-1].text \
        == f"{CONTIG}:30001-31000"
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "api/search" not in e["message"]]


def test_a_client_that_gives_up_stops_its_request_and_the_next_is_answered_soon(server, ecoli_sequence):
    """450 queries of 2 kb (900 kb, nine batches of 100 kb) whose client leaves after 2 s: the worker
    stops at its next batch and says so, and a query sent then is answered within about a batch's time
    (measured here first: one batch of the same queries), not after the other 800 kb."""
    import re
    import socket

    records = "".join(f">r{i}\n{ecoli_sequence[i * 400 : i * 400 + 2_000].decode()}\n" for i in range(450))
    one_batch = "".join(records.splitlines(keepends=True)[:100])  # 50 queries: 100 kb
    started = time.monotonic()
    assert call(server, {"fasta": one_batch, "k": 3}, timeout=300)[0] == 200
    batch_seconds = time.monotonic() - started
    body = json.dumps({"fasta": records, "k": 3}).encode()
    with socket.create_connection(("127.0.0.1", server["port"])) as sock:
        sock.sendall(b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(2)
    started = time.monotonic()
    assert call(server, {"region": f"eco:{CONTIG}:0-500", "k": 1})[0] == 200
    waited = time.monotonic() - started
    gone = re.search(r"client gone: request of 900000 bp stopped after (\d+) of 450 queries", server["log"].read_text())
    assert gone and int(gone.group(1)) < 450, server["log"].read_text()[-2000:]
    assert waited < 2 * batch_seconds + 2, (waited, batch_seconds)  # the batch under way, then this query
