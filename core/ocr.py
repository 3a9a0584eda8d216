"""OCR: page images in, text with a confidence out.

Two engines behind one small interface, chosen by measurement (benchmarks/bench_ocr.py):

- :class:`TesseractEngine` (Tesseract 5, LSTM, from Debian): the pipeline's engine, locally and in the eks image.
- :class:`RapidOcrEngine` (PP-OCR ONNX models from RapidOCR's wheel): measured against it, not installed by setup.

An engine never invents text: a page it cannot read comes back with low confidence and the caller quarantines it.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageFilter, ImageOps

# Tesseract reads best at 300 dpi (x-height ~20-30 px); lower-resolution pages are upscaled to it first.
TARGET_DPI = 300


@dataclass
class OcrPage:
    text: str  # lines joined by "\n", paragraphs by a blank line
    confidence: float  # mean word confidence, 0-100, weighted by word length; 0 when no word was found
    words: int
    seconds: float
    lines: list[str] = field(default_factory=list)


class OcrEngine(Protocol):
    name: str

    @property
    def version(self) -> str: ...

    def read(self, image: Image.Image, dpi: int | None = None) -> OcrPage: ...


def skew_angle(image: Image.Image, max_deg: float = 5.0, step: float = 0.25) -> float:
    """The rotation that makes text lines horizontal: the angle whose row profile of ink is sharpest (largest variance),
    searched on a small binarized copy."""
    import numpy as np

    small = image.copy()
    small.thumbnail((900, 900))
    ink = small.point(lambda v: 255 if v < 128 else 0)
    best, best_score = 0.0, -1.0
    for i in range(int(-max_deg / step), int(max_deg / step) + 1):
        angle = i * step
        rows = np.asarray(ink.rotate(angle, resample=Image.Resampling.NEAREST, fillcolor=0), dtype=np.float32).sum(1)
        score = float(np.var(rows))
        if score > best_score:
            best, best_score = angle, score
    return best


def prepare(image: Image.Image, dpi: int | None) -> tuple[Image.Image, int]:
    """Grayscale, EXIF orientation applied, speckles removed, deskewed, upscaled to TARGET_DPI when the scan is
    coarser."""
    image = ImageOps.exif_transpose(image)
    if image.mode not in ("L", "1"):
        if image.mode in ("RGBA", "LA", "P"):
            bg = Image.new("RGB", image.size, "white")
            rgba = image.convert("RGBA")
            bg.paste(rgba, mask=rgba.split()[-1])
            image = bg
        image = image.convert("L")
    # a 3x3 median removes scanner speckle (isolated dots Tesseract reads as punctuation) and keeps strokes
    image = image.filter(ImageFilter.MedianFilter(3))
    angle = skew_angle(image)
    if abs(angle) >= 0.25:
        image = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    dpi = int(dpi or TARGET_DPI)
    if dpi < TARGET_DPI * 0.8:
        scale = TARGET_DPI / dpi
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        dpi = TARGET_DPI
    return image, dpi


def image_dpi(image: Image.Image) -> int | None:
    dpi = image.info.get("dpi")
    if dpi and dpi[0] and float(dpi[0]) >= 50:
        return round(float(dpi[0]))
    return None


class TesseractEngine:
    """The ``tesseract`` CLI (one process per page; its TSV carries each word's confidence and line)."""

    name = "tesseract"

    def __init__(self, root: str = "", lang: str = "eng", psm: int = 3, timeout_s: float = 120.0):
        # root: an unpacked Debian tree (usr/bin, usr/lib/<arch>, usr/share/tesseract-ocr), or "" for the system's
        self.root = Path(root) if root else None
        self.lang, self.psm, self.timeout_s = lang, psm, timeout_s

    def _cmd_env(self) -> tuple[str, dict[str, str]]:
        env = dict(os.environ)
        # one thread per page: the pipeline runs one page per core (Ray tasks), OpenMP threads would oversubscribe
        env["OMP_THREAD_LIMIT"] = "1"
        if self.root is None:
            # resolved here, not by the cached version probe: an engine gone from PATH is an error, not a cache hit
            found = shutil.which("tesseract", path=env.get("PATH"))
            if not found:
                raise RuntimeError("tesseract is not on PATH (the eks image installs tesseract-ocr)")
            return found, env
        libs = [str(p) for p in (self.root / "usr" / "lib").glob("*-linux-gnu")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + [env.get("LD_LIBRARY_PATH", "")]).strip(os.pathsep)
        data = sorted((self.root / "usr" / "share" / "tesseract-ocr").glob("*/tessdata"))
        if data:
            env["TESSDATA_PREFIX"] = str(data[-1])
        return str(self.root / "usr" / "bin" / "tesseract"), env

    @property
    def version(self) -> str:
        binary, env = self._cmd_env()
        return f"{_tesseract_version(binary, env.get('LD_LIBRARY_PATH', ''))}:{self.lang}:psm{self.psm}"

    def read(self, image: Image.Image, dpi: int | None = None) -> OcrPage:
        t0 = time.perf_counter()
        image, dpi = prepare(image, dpi or image_dpi(image))
        buf = io.BytesIO()
        image.save(buf, format="PPM")  # PGM for grayscale: no compression to spend time on, leptonica reads it
        binary, env = self._cmd_env()
        cmd = [binary, "stdin", "stdout", "-l", self.lang, "--psm", str(self.psm), "--dpi", str(dpi), "tsv"]
        out = subprocess.run(cmd, input=buf.getvalue(), capture_output=True, env=env, timeout=self.timeout_s)
        if out.returncode != 0:
            raise RuntimeError(f"tesseract failed ({out.returncode}): {out.stderr.decode(errors='replace')[:300]}")
        return _from_tsv(out.stdout.decode("utf-8", errors="replace"), time.perf_counter() - t0)


@functools.lru_cache(maxsize=8)
def _tesseract_version(binary: str, lib_path: str) -> str:
    """``tesseract --version``, once per process and installation (every parse task asks, per shard)."""
    env = dict(os.environ, LD_LIBRARY_PATH=lib_path) if lib_path else dict(os.environ)
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, env=env, timeout=30)
    first = (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else ""
    if out.returncode != 0 or not first.startswith("tesseract"):
        raise RuntimeError(f"tesseract does not run ({binary}): {out.stderr.strip()[:300]}")
    return first.replace(" ", "-")


def _from_tsv(tsv: str, seconds: float) -> OcrPage:
    lines: dict[tuple[int, int, int], list[str]] = {}  # (block, paragraph, line) -> words, in reading order
    conf_sum = weight = words = 0.0
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") != "5":
            continue
        word = (row.get("text") or "").strip()
        if not word:
            continue
        block, par, line = int(row["block_num"]), int(row["par_num"]), int(row["line_num"])
        lines.setdefault((block, par, line), []).append(word)
        conf = max(float(row.get("conf") or 0), 0.0)
        conf_sum += conf * len(word)
        weight += len(word)
        words += 1
    paragraphs: dict[tuple[int, int], list[str]] = {}
    for (block, par, _), ws in lines.items():
        paragraphs.setdefault((block, par), []).append(" ".join(ws))
    texts = [line for p in paragraphs.values() for line in p]
    paras = ["\n".join(p) for p in paragraphs.values()]
    return OcrPage(
        text="\n\n".join(paras),
        confidence=round(conf_sum / weight, 2) if weight else 0.0,
        words=int(words),
        seconds=round(seconds, 4),
        lines=texts,
    )


class RapidOcrEngine:
    """RapidOCR (PP-OCR detection + recognition ONNX models in its wheel), for the comparison in bench_ocr."""

    name = "rapidocr"

    def __init__(self):
        from rapidocr import RapidOCR

        # one intra-op thread, as Tesseract gets one: the comparison is per core
        self._engine = RapidOCR(
            params={"Global.log_level": "critical", "EngineConfig.onnxruntime.intra_op_num_threads": 1}
        )

    @property
    def version(self) -> str:
        import importlib.metadata

        return f"rapidocr-{importlib.metadata.version('rapidocr')}"

    def read(self, image: Image.Image, dpi: int | None = None) -> OcrPage:
        import numpy as np

        t0 = time.perf_counter()
        image, _ = prepare(image, dpi or image_dpi(image))
        result = self._engine(np.asarray(image.convert("RGB")))
        txts = list(result.txts or ())
        scores = list(result.scores or ())
        weight = sum(len(t) for t in txts)
        conf = sum(s * 100 * len(t) for t, s in zip(txts, scores)) / weight if weight else 0.0
        return OcrPage(
            text="\n".join(txts),
            confidence=round(conf, 2),
            words=sum(len(t.split()) for t in txts),
            seconds=round(time.perf_counter() - t0, 4),
            lines=txts,
        )


# ---------------------------------------------------------------- measuring


def _levenshtein(a: list[str] | str, b: list[str] | str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _norm(text: str) -> str:
    return " ".join(text.split())


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: edit distance over the reference's length, whitespace runs counted as one space."""
    ref, hyp = _norm(reference), _norm(hypothesis)
    return _levenshtein(ref, hyp) / max(len(ref), 1)


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = _norm(reference).split(), _norm(hypothesis).split()
    return _levenshtein(ref, hyp) / max(len(ref), 1)
