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


@pytest.fixture(scope="module")
def server(default_index):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "genembed.cli", "serve", "--index", str(default_index["dir"]),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/info", timeout=5).read()
            break
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
    yield {"url": url, "port": port, "proc": proc}
    proc.terminate()
    proc.wait(30)


def call(server, body, path="/api/search") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(server["url"] + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
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
    status, reply = call(server, {"sequence": ecoli_sequence[9000:9500].decode().lower(), "k": 2, "windows": True})
    assert status == 200 and reply["columns"][:3] == ["query", "query_start", "query_end"]
    with urllib.request.urlopen(server["url"] + "/api/info") as r:
        info = json.loads(r.read())
    assert info["genomes"] == ["eco"] and info["window_size"] == 500 and info["windows"] == 799


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
    ({"region": f"eco:{CONTIG}:0-999999999"}, 400, "longer than 10,000,000 bp"),
    ({"region": f"eco:{CONTIG}:199000-201000"}, 400, "outside 0-200000"),
    ({"fasta": "ACGT\n"}, 400, "sequence before the first '>' header"),
])
def test_bad_requests_get_a_4xx_with_one_line_and_the_server_stays_up(server, body, status, message):
    got, reply = call(server, body)
    assert got == status and message in reply["detail"] and "\n" not in reply["detail"], reply
    assert call(server, {"region": f"eco:{CONTIG}:0-500", "k": 1})[0] == 200


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


@pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
def test_the_page_searches_a_region_and_sorts_the_loci_in_chromium(server, browser):
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
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "api/search" not in e["message"]]
