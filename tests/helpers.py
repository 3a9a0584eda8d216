"""Real files of every supported format (and broken ones), built in code so the suite ships no binaries."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import time


def start_moto_server():
    """A moto server (S3, SQS, IAM, ...) on a free loopback port: (process, url). The caller terminates it."""
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    return proc, url


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_pdf(lines: list[str], title: str = "") -> bytes:
    """A minimal but valid PDF 1.4 with a real text layer (Helvetica), xref offsets computed."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 11 Tf", "72 740 Td", "14 TL"]
    for line in lines:
        ops.append(f"({esc(line)}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ("<< /Title (%s) >>" % esc(title)).encode("latin-1"),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


GOOD_FILES = {
    "uploads/guideline.html": (
        b"<!doctype html><html><head><title>Hypertension management guideline</title><style>p{color:red}</style>"
        b"<script>var tracking = 1;</script></head><body><h1>Hypertension management guideline</h1>"
        b"<h2>Background</h2><p>Hypertension is a major risk factor for stroke and myocardial infarction.</p>"
        b"<h2>Recommendations</h2><p>Start with lifestyle changes; add an ACE inhibitor when blood pressure stays above target.</p>"
        b"</body></html>"
    ),
    "uploads/notes.md": (
        b"---\nauthor: ward 3\n---\n# Sepsis bundle checklist\n\n## Within one hour\n\nMeasure **lactate**, take blood cultures "
        b"before antibiotics, and give broad-spectrum [antibiotics](https://example.org).\n\n## Fluids\n\nGive 30 mL/kg crystalloid "
        b"for hypotension or lactate of 4 mmol/L or more.\n"
    ),
    "uploads/plain.txt": (
        b"Influenza vaccination in older adults\n\nAnnual influenza vaccination reduces hospital admissions for pneumonia "
        b"among adults over sixty-five years of age. High-dose vaccines give higher antibody titres."
    ),
    "uploads/latin1.txt": (
        "Caf\xe9-au-lait spots and neurofibromatosis\n\nSix or more caf\xe9-au-lait macules larger than 5 mm are a diagnostic "
        "criterion for neurofibromatosis type 1 in prepubertal children."
    ).encode("cp1252"),
    "uploads/record.json": json.dumps(
        {
            "pmid": "J1",
            "title": "Metformin and lactic acidosis",
            "year": 2019,
            "journal": "Test Journal",
            "abstract": "Metformin-associated lactic acidosis is rare and mostly occurs with severe renal impairment.",
        }
    ).encode(),
    "uploads/trials.csv": (
        b"trial,condition,outcome\nRECOVERY,COVID-19,dexamethasone reduced 28-day mortality in ventilated patients\n"
        b"SPRINT,hypertension,intensive blood pressure control lowered cardiovascular events\n"
    ),
    "uploads/report.pdf": make_pdf(
        [
            "Antimicrobial stewardship report.",
            "Carbapenem use fell by a third after prospective audit and feedback.",
            "Clostridioides difficile infections also declined during the intervention period.",
        ],
        title="Antimicrobial stewardship report",
    ),
}


def bad_files() -> dict[str, tuple[bytes, str]]:
    """key -> (content, expected reason fragment)."""
    rnd = random.Random(7)
    return {
        "uploads/empty.txt": (b"", "empty file"),
        "uploads/blob.bin": (bytes(rnd.getrandbits(8) for _ in range(4096)), "binary"),
        "uploads/truncated.xml": (
            b'<?xml version="1.0"?><PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID><Article><ArticleTitle>Cut',
            "malformed XML",
        ),
        "uploads/broken.pdf": (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\nendobj\ngarbage", "PDF"),
        "uploads/huge.txt": (b"lorem ipsum dolor sit amet " * (11 * 1024 * 1024 // 27 + 1), "oversized"),
        "uploads/archive.gz": (b"\x1f\x8b\x08\x00" + bytes(64), "compressed archive"),
        "uploads/whitespace.md": (b"   \n\n   \n", "no extractable text"),
    }


@contextlib.contextmanager
def serve_in_thread(app, log_level: str = "warning"):
    """An ASGI app under uvicorn on a free loopback port, in a daemon thread: yields its base URL, stops it after."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def scanned_abstract(key: str, data: bytes, seed: int, dpi: int = 200) -> tuple[bytes, str]:
    """A real abstract as a scanner delivers it: rendered, slightly rotated and speckled, in an image-only PDF.
    Returns (pdf bytes, the abstract's title)."""
    from core import scans
    from core.documents import parse_document

    doc = parse_document(key, data)
    paras = scans.abstract_paragraphs([(s.label, s.text) for s in doc.sections])
    rendered = scans.render_document(doc.title, f"{doc.journal}. {doc.year}.", paras, dpi=dpi)
    pages = [scans.degrade(p, seed + i, rotate_deg=2.0, noise=0.01, blur=0.5) for i, p in enumerate(rendered.pages)]
    return scans.scan_pdf(pages, dpi), doc.title


def stack_cli(stack) -> tuple[str, dict]:
    """(path of the `agentic` console script, its environment) for CLI runs against the session's serving stack."""
    import os
    import sys

    s = stack.settings
    env = dict(
        os.environ,
        AGENTIC_HOME=str(s.home),
        AGENTIC_LLM="0.5b",
        AGENTIC_GATEWAY_PORT=str(s.gateway_port),
        AGENTIC_WEB_SEARCH="http",
        AGENTIC_WEB_SEARCH_URL=s.web_search_url,
    )
    return os.path.join(os.path.dirname(sys.executable), "agentic"), env
