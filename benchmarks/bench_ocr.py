"""OCR engines and table extraction on a generated test set made from the real corpus.

Abstracts are rendered to pages (core.scans) in four conditions: clean 300 dpi image-only PDF, and degraded (rotated
up to 3 degrees, speckle noise, blur, grey paper) at 300, 200 (JPEG) and 150 dpi. Each engine reads the same pages
through the same preparation (core.ocr.prepare); CER and WER are against the exact text rendered. Pages per second
are single-threaded (OMP_THREAD_LIMIT=1, one page at a time): pages per second per core. The whole parse path
(pdfium render + OCR + parse) is timed for the pipeline's engine. Tables: ruled tables of known data in digital PDFs,
cell accuracy of what the parser returns as Markdown. Cost per 1,000 pages from the price book's on-demand prices.

    .venv/bin/python benchmarks/bench_ocr.py [--docs 10] [--engines tesseract,rapidocr]

RapidOCR is not a dependency of the project: the benchmark installs rapidocr==3.10.0 (with its PP-OCR ONNX models)
into the user cache on first use, beside the venv, and loads it from there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, machine  # noqa: E402
from core import scans  # noqa: E402
from core.corpus import ARTICLE_TABLE, load_sample  # noqa: E402
from core.documents import OcrOptions, markdown_cells, parse_document  # noqa: E402
from core.ocr import RapidOcrEngine, TesseractEngine, cer, wer  # noqa: E402
from pipelines.settings import load_settings  # noqa: E402
from resources.ocr import cached_tesseract_root  # noqa: E402

RAPIDOCR = "rapidocr==3.10.0"
TEXTRACT_USD_PER_1000 = (
    1.50  # Amazon Textract DetectDocumentText, first million pages a month (aws.amazon.com/textract/pricing)
)

CONDITIONS = {
    # name: (dpi, degrade, container)
    "clean_300dpi_pdf": (300, None, "pdf"),
    "degraded_300dpi_pdf": (300, {"rotate_deg": 3.0, "noise": 0.02, "blur": 0.6}, "pdf"),
    "degraded_200dpi_jpeg": (200, {"rotate_deg": 3.0, "noise": 0.01, "blur": 0.5}, "jpeg"),
    "degraded_150dpi_png": (150, {"rotate_deg": 2.0, "noise": 0.005, "blur": 0.4}, "png"),
    # beyond the goal's conditions: a poor phone photo (more rotation, noise and blur, heavy JPEG)
    "photo_150dpi_jpeg": (150, {"rotate_deg": 4.0, "noise": 0.03, "blur": 0.9}, "jpeg"),
}


def rapidocr_engine(cache: Path) -> RapidOcrEngine:
    target = cache / "pkgs" / RAPIDOCR.replace("==", "-")
    if not (target / ".done").exists():
        # uv as setup.sh runs it (the system Python's module), installing for this venv's interpreter
        uv = [shutil.which("uv")] if shutil.which("uv") else [os.environ.get("PYTHON", "python3"), "-m", "uv"]
        subprocess.run(
            [*uv, "pip", "install", "-q", "-p", sys.executable, "--target", str(target), RAPIDOCR], check=True
        )
        (target / ".done").touch()
    sys.path.append(str(target))  # after the venv: its numpy and onnxruntime win
    return RapidOcrEngine()


def test_set(settings, n_docs: int) -> list[dict]:
    docs = []
    for i, (key, xml) in enumerate(load_sample(settings.pubmed_dir / ARTICLE_TABLE, n_docs * 3)):
        d = parse_document(key, xml)
        if not d.title or len(d.text) < 400:
            continue
        paras = scans.abstract_paragraphs([(s.label, s.text) for s in d.sections])
        docs.append({"key": key, "title": d.title, "header": f"{d.journal}. {d.year}.", "paras": paras, "seed": i})
        if len(docs) == n_docs:
            break
    return docs


def pages_for(doc: dict, dpi: int, degrade: dict | None) -> tuple[list, str]:
    r = scans.render_document(doc["title"], doc["header"], doc["paras"], dpi=dpi)
    pages = [scans.degrade(p, doc["seed"] * 7 + i, **degrade) for i, p in enumerate(r.pages)] if degrade else r.pages
    return pages, r.text


def measure_engine(engine, docs: list[dict]) -> dict:
    out = {}
    warm, _ = pages_for(docs[0], 150, None)
    engine.read(warm[0], 150)  # model loading is not a page's time
    for name, (dpi, degrade, container) in CONDITIONS.items():
        cers, wers, secs, pages_n = [], [], 0.0, 0
        for doc in docs:
            pages, reference = pages_for(doc, dpi, degrade)
            if container == "jpeg":  # what the engine gets is the decoded JPEG, artifacts and all
                from io import BytesIO

                from PIL import Image

                quality = 75 if dpi >= 200 else 60
                pages = [Image.open(BytesIO(scans.image_bytes(p, "jpeg", dpi, quality=quality))) for p in pages]
            texts = []
            for p in pages:
                result = engine.read(p, dpi)
                texts.append(result.text)
                secs += result.seconds
                pages_n += 1
            hyp = "\n".join(texts)
            cers.append(cer(reference, hyp))
            wers.append(wer(reference, hyp))
        out[name] = {
            "pages": pages_n,
            "cer_mean": round(statistics.mean(cers), 4),
            "cer_max": round(max(cers), 4),
            "wer_mean": round(statistics.mean(wers), 4),
            "pages_per_second_per_core": round(pages_n / secs, 3),
        }
        print(engine.name, name, out[name], flush=True)
    return out


def measure_parse_path(ocr: OcrOptions, docs: list[dict]) -> dict:
    """parse_document on image-only PDFs: pdfium render at 300 dpi, prepare, OCR, sections, type."""
    t, pages, titles = 0.0, 0, 0
    for doc in docs:
        scan_pages, _ = pages_for(doc, 300, CONDITIONS["degraded_300dpi_pdf"][1])
        data = scans.scan_pdf(scan_pages, 300)
        t0 = time.perf_counter()
        parsed = parse_document(f"scans/{doc['key']}.pdf", data, ocr=ocr)
        t += time.perf_counter() - t0
        pages += parsed.pages
        titles += parsed.title == doc["title"]
    return {"pages": pages, "pages_per_second_per_core": round(pages / t, 3), "title_exact": f"{titles}/{len(docs)}"}


def measure_tables(n: int = 20) -> dict:
    accs, tables, rows = [], 0, 0
    for seed in range(n):
        specs = [scans.generated_table(seed * 10 + j, rows=6 + (seed + j) % 6) for j in range(1 + seed % 2)]
        data = scans.table_pdf(
            f"Trial report {seed}", "Participants were enrolled at four centres.", specs, "Results follow."
        )
        doc = parse_document(f"reports/{seed}.pdf", data)
        got = [s for s in doc.sections if s.kind == "table"]
        for j, (_, header, body) in enumerate(specs):
            expected = [header, *body]
            cells = markdown_cells(got[j].text) if j < len(got) else []
            accs.append(scans.cell_accuracy(expected, cells))
            tables += 1
            rows += len(expected)
    return {
        "documents": n,
        "tables": tables,
        "rows": rows,
        "cell_accuracy_mean": round(statistics.mean(accs), 4),
        "cell_accuracy_min": round(min(accs), 4),
    }


def cost(pages_per_second_per_core: float, prices: dict) -> dict:
    out = {"textract_detect_text_usd_per_1000_pages": TEXTRACT_USD_PER_1000}
    for name in ("ec2_c7g.2xlarge_hour", "ec2_m7i.2xlarge_hour"):
        p = prices[name]
        vcpu_hour = p["usd"] / p["vcpus"]
        hours = 1000 / pages_per_second_per_core / 3600
        out[f"tesseract_on_{name[4:-5]}_usd_per_1000_pages"] = round(vcpu_hour * hours, 4)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=10)
    ap.add_argument("--engines", default="tesseract,rapidocr")
    args = ap.parse_args()
    os.environ["OMP_THREAD_LIMIT"] = "1"
    settings = load_settings(dict(os.environ))
    docs = test_set(settings, args.docs)
    tesseract = TesseractEngine(root=str(cached_tesseract_root(settings.cache)))
    load = os.getloadavg()
    results = {"machine": machine(), "load_before": [round(x, 2) for x in load], "documents": len(docs), "engines": {}}
    for name in args.engines.split(","):
        engine = tesseract if name == "tesseract" else rapidocr_engine(settings.cache)
        results["engines"][name] = {"version": engine.version, "conditions": measure_engine(engine, docs)}
    results["parse_path_tesseract"] = measure_parse_path(OcrOptions(tesseract), docs)
    results["tables"] = measure_tables()
    prices = json.loads((Path(__file__).resolve().parents[1] / "infra/prices/aws-prices.json").read_text())
    pps = results["parse_path_tesseract"]["pages_per_second_per_core"]  # the whole path a worker runs per page
    results["cost_per_1000_pages"] = cost(pps, prices["regions"]["us-east-1"])
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ocr.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
