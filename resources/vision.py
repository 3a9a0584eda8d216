"""Image descriptions from a vision-language model, for the knowledge side (figures, scanned pages).

One interface, two implementations, chosen per profile (``pipelines/profiles.py``, resource key ``vision``):

- ``GatewayVision`` (eks): one OpenAI chat completion whose user message carries the prompt and the image as a base64
  ``image_url`` data URL, sent to the LiteLLM gateway's ``vision`` route (Qwen2.5-VL-7B-Instruct on vLLM, the
  ``agentic-vision`` RayService on the GPU pool).
- ``NoVision`` (local): no vision-language model can be had offline here (none ships in a package the reachable
  registries serve, and the model hub is out of reach), so ``available`` is False and ``describe`` raises
  ``VisionUnavailable``. Callers check ``available`` and keep the image without a description.
"""

from __future__ import annotations

import base64
import struct
import zlib

import dagster as dg

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class VisionError(RuntimeError):
    pass


class VisionUnavailable(VisionError):
    pass


class VisionResource(dg.ConfigurableResource):
    """What the knowledge side calls: ``describe`` a PNG image as text, if ``available``."""

    @property
    def available(self) -> bool:
        return False

    def describe(self, image_png: bytes, prompt: str) -> str:
        raise NotImplementedError

    def worker_spec(self) -> dict | None:
        """What a Ray worker needs to call the model (no secret: the key's environment variable, by name); None when
        there is no model."""
        return None


def vision_from_worker_spec(spec: dict | None) -> VisionResource | None:
    """The resource a Ray worker calls, from :meth:`VisionResource.worker_spec`; the key from the worker's env."""
    if not spec:
        return None
    import os

    spec = dict(spec)
    env = spec.pop("api_key_env")
    key = os.environ.get(env)
    if not key:
        raise VisionError(f"{env} is not set in this worker: the vision model cannot be called")
    return GatewayVision(api_key=key, api_key_env=env, **spec)


class NoVision(VisionResource):
    """local: no vision-language model on this profile."""

    def describe(self, image_png: bytes, prompt: str) -> str:
        raise VisionUnavailable(
            "no vision-language model on the local profile: none can be had offline here (the eks profile routes "
            "images to the gateway's `vision` model, Qwen2.5-VL-7B-Instruct on vLLM); check `vision.available` first"
        )


class GatewayVision(VisionResource):
    """eks: the gateway's ``vision`` route, through the OpenAI chat-completions protocol."""

    url: str = "http://127.0.0.1:4000"  # the LiteLLM gateway
    api_key: str  # dg.EnvVar("AGENTIC_GATEWAY_KEY")
    api_key_env: str = "AGENTIC_GATEWAY_KEY"  # where Ray workers find the key (worker_spec never carries it)
    model: str = "vision"  # the gateway's route name
    max_tokens: int = 512
    temperature: float = 0.0
    timeout_s: float = 120.0

    @property
    def available(self) -> bool:
        return True

    @property
    def name(self) -> str:
        return f"gateway-{self.model}"

    def worker_spec(self) -> dict | None:
        return {
            "url": self.url,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "timeout_s": self.timeout_s,
            "api_key_env": self.api_key_env,
        }

    def describe(self, image_png: bytes, prompt: str) -> str:
        import openai

        if not image_png.startswith(PNG_SIGNATURE):
            raise ValueError("describe() takes a PNG image (the bytes do not start with the PNG signature)")
        if not prompt.strip():
            raise ValueError("describe() needs a prompt")
        # the gateway retries; a second retry layer here would multiply a slow GPU's queueing
        client = openai.OpenAI(
            base_url=f"{self.url.rstrip('/')}/v1", api_key=self.api_key, timeout=self.timeout_s, max_retries=0
        )
        try:
            resp = client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": image_message(image_png, prompt)}],
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
        except openai.APIStatusError as exc:
            raise VisionError(
                f"the gateway's {self.model!r} route answered {exc.status_code}: {str(exc.message)[:300]}"
            ) from exc
        except openai.APIError as exc:
            raise VisionError(f"the gateway's {self.model!r} route at {self.url} failed: {exc}") from exc
        text = (resp.choices[0].message.content or "").strip() if resp.choices else ""
        if not text:
            raise VisionError(f"the gateway's {self.model!r} route returned no description")
        return text


def image_message(image_png: bytes, prompt: str) -> list[dict]:
    """An OpenAI user message's content: the prompt and the image as a base64 PNG data URL (inline: the image is the
    caller's own bytes, so the model server has nothing to fetch)."""
    data = base64.b64encode(image_png).decode("ascii")
    return [
        {"type": "text", "text": prompt},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
    ]


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid RGB PNG of one colour, built with zlib alone (for probes and tests: no imaging library needed)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width  # filter type 0 per scanline
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")
