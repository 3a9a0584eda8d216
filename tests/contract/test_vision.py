"""The vision resource (the knowledge side's image descriptions).

``GatewayVision`` speaks OpenAI chat completions with a base64 ``image_url`` part: against a local peer that speaks that
protocol (standing in for vLLM serving Qwen2.5-VL, which cannot run here), directly and through the real LiteLLM
gateway started with the ``vision`` route the eks config renders. ``NoVision`` (local) says plainly that there is none.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from infra.platform.gateway import render_litellm_config
from resources.gateway import LocalGateway
from resources.probes import vision_ok
from resources.vision import GatewayVision, NoVision, VisionError, VisionUnavailable, solid_png
from tests.fixtures_http import OpenAIVisionFixture
from tests.helpers import free_port

KEY = "sk-vision-test-" + "0" * 24


@pytest.fixture
def vision_peer():
    peer = OpenAIVisionFixture()
    yield peer
    peer.close()


def _image_parts(body: dict) -> list[bytes]:
    parts = [p for m in body["messages"] for p in m["content"] if p["type"] == "image_url"]
    return [base64.b64decode(p["image_url"]["url"].split(",", 1)[1]) for p in parts]


def test_gateway_vision_sends_one_chat_completion_with_the_image_part():
    peer = OpenAIVisionFixture(key=KEY, model="vision")  # the gateway's side of the call: the route is the model
    try:
        png = solid_png(64, 48, (10, 200, 30))
        vision = GatewayVision(url=peer.url, api_key=KEY)
        assert vision.available
        text = vision.describe(png, "Describe this figure for a clinician.")
        assert text == "A PNG image of 64x48 pixels."
        [req] = peer.requests
        assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {KEY}"
        body = req["body"]
        assert body["model"] == "vision" and body["temperature"] == 0 and body["max_tokens"] == 512
        [message] = body["messages"]
        assert message["role"] == "user"
        assert message["content"][0] == {"type": "text", "text": "Describe this figure for a clinician."}
        assert message["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
        assert _image_parts(body) == [png]  # the bytes arrive whole

        # what the route refuses comes back as a VisionError that names the route and the status
        with pytest.raises(VisionError, match="'vision' route answered 401"):
            GatewayVision(url=peer.url, api_key="not-the-key").describe(png, "Describe it.")
        # what is not a PNG never leaves the process
        with pytest.raises(ValueError, match="PNG"):
            vision.describe(b"\xff\xd8\xff\xe0 a jpeg", "Describe it.")
        assert len(peer.requests) == 2
    finally:
        peer.close()


def test_gateway_vision_reports_an_unreachable_gateway():
    vision = GatewayVision(url=f"http://127.0.0.1:{free_port()}", api_key=KEY, timeout_s=5)
    with pytest.raises(VisionError, match="failed"):
        vision.describe(solid_png(2, 2, (0, 0, 0)), "Describe it.")


def test_no_vision_is_unavailable_and_says_why():
    vision = NoVision()
    assert vision.available is False
    with pytest.raises(VisionUnavailable, match="no vision-language model on the local profile"):
        vision.describe(solid_png(2, 2, (0, 0, 0)), "Describe it.")


def test_the_gateway_routes_vision_to_the_vision_deployment(vision_peer, tmp_path: Path):
    """The real LiteLLM proxy with the config the serving assets render: `vision` reaches the vision deployment's
    OpenAI route (its RayService's path on eks) with the image part as sent, the served model's name upstream."""
    config = render_litellm_config(
        "qwen3-14b",
        f"{vision_peer.url}/llm/v1",
        "snowflake-arctic-embed-s-onnx",
        f"{vision_peer.url}/embed/v1",
        timeout_s=30,
        vision_name="qwen2.5-vl-7b",
        vision_api_base=f"{vision_peer.url}/vision/v1",
    )
    gateway = LocalGateway(url=f"http://127.0.0.1:{free_port()}", master_key=KEY, state_dir=str(tmp_path))
    gateway.start(config)
    try:
        assert {"vision", "qwen2.5-vl-7b"} <= set(gateway.models())
        png = solid_png(40, 30, (200, 200, 0))
        text = GatewayVision(url=gateway.url, api_key=KEY).describe(png, "What does this chart show?")
        assert text == "A PNG image of 40x30 pixels."
        req = vision_peer.requests[-1]
        assert req["path"] == "/vision/v1/chat/completions" and req["body"]["model"] == "qwen2.5-vl-7b"
        assert _image_parts(req["body"]) == [png]
        assert {"type": "text", "text": "What does this chart show?"} in req["body"]["messages"][0]["content"]
        # the serving check's probe takes the same route
        ok, meta = vision_ok(f"{gateway.url}/v1", "vision", {"Authorization": f"Bearer {KEY}"})
        assert ok and meta["reply"] == "A PNG image of 32x32 pixels.", meta
        # no key, no vision
        with pytest.raises(VisionError):
            GatewayVision(url=gateway.url, api_key="not-the-key").describe(png, "What does this chart show?")
    finally:
        gateway.stop()
