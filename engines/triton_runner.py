"""A model served by Triton Inference Server, as a runner: ``TritonRunner("127.0.0.1:8000",
"model_fp32")`` maps an RGB batch to metres through Triton's HTTP or gRPC protocol
(tritonclient), so evaluate / bench measure a served model as they measure a local one.

The input and output come from the server's own model metadata and config (names, data type,
dims, max_batch_size); the depth range from the config's parameters where the repository
``triton-repo`` wrote them. Every failure is one line: the server not up or not answering
within ``timeout``, a model name it does not have, a batch of the wrong shape or type.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np

from densedepth.util.errors import BackendUnavailable, DenseDepthError
from engines.base import ModelInfo, RunnerBase, check_batch, model_info

PROTOCOLS = ("http", "grpc")
NUMPY_TYPES = {"FP32": np.float32, "FP16": np.float16}


class TritonError(DenseDepthError):
    """A request Triton refused or could not be sent (one line)."""


def _client_module(protocol: str) -> Any:
    if protocol not in PROTOCOLS:
        raise DenseDepthError(f"--protocol {protocol!r}: choose http or grpc")
    try:
        if protocol == "grpc":
            import tritonclient.grpc as client
        else:
            import tritonclient.http as client
    except ModuleNotFoundError:
        raise BackendUnavailable("talking to Triton needs tritonclient: pip install "
                                 "'.[triton]'") from None  # fmt: skip
    return client


def make_client(url: str, protocol: str = "http", timeout: float = 30.0) -> Any:
    """A tritonclient InferenceServerClient for ``url`` (host:port, no scheme)."""
    client = _client_module(protocol)
    url = url.split("://", 1)[-1].rstrip("/")
    if protocol == "grpc":
        return client.InferenceServerClient(url=url)
    return client.InferenceServerClient(url=url, connection_timeout=timeout,
                                        network_timeout=timeout)  # fmt: skip


def triton_call(what: str, url: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with tritonclient's failures as one line naming ``what``."""
    from tritonclient.utils import InferenceServerException

    try:
        return fn(*args, **kwargs)
    except InferenceServerException as exc:
        text = " ".join((exc.message() or str(exc)).split())
        text = text.replace("[request id: <id_unknown>] ", "")
        if "failed to connect" in text or "UNAVAILABLE" in str(exc.status()):
            raise TritonError(f"no Triton server answers at {url} ({what}): start one "
                              f"(cli.py serve MODEL) or check --server") from None  # fmt: skip
        raise TritonError(f"Triton at {url} refused {what}: {text.split('. NOTE:')[0]}") from None
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise TritonError(f"no Triton server answers at {url} ({what}: {exc}): start one "
                          f"(cli.py serve MODEL) or check --server") from None  # fmt: skip


class TritonRunner(RunnerBase):
    """A model on a Triton server (see the module docstring)."""

    def __init__(self, url: str, model: str, protocol: str = "http", timeout: float = 30.0) -> None:
        self.url, self.model, self.protocol, self.timeout = url, model, protocol, timeout
        self.client = make_client(url, protocol, timeout)
        ready = triton_call("a readiness check", url, self.client.is_server_ready)
        if not ready:
            raise TritonError(f"the Triton server at {url} is not ready")
        if not triton_call("a readiness check", url, self.client.is_model_ready, model):
            names = self.model_names()
            listed = f"; its repository lists: {', '.join(names)}" if names else ""
            raise TritonError(f"Triton at {url} has no ready model {model!r}{listed} "
                              f"(check --model)")  # fmt: skip
        meta = self._as_dict(
            triton_call("the model metadata", url, self.client.get_model_metadata, model)
        )
        config = self._as_dict(
            triton_call("the model config", url, self.client.get_model_config, model)
        )
        config = config.get("config", config)
        (inp,), (out,) = meta["inputs"], meta["outputs"]
        self.input_name, self.output_name = inp["name"], out["name"]
        self.datatype = inp["datatype"]
        shape = [int(d) for d in inp["shape"]]
        self.max_batch_size = int(config.get("max_batch_size", 0) or 0)
        dims = shape[1:] if self.max_batch_size > 0 else shape
        if len(dims) != 4 - (self.max_batch_size > 0) or dims[-3] != 3:
            raise TritonError(f"{model} on {url} takes {shape}, not an RGB N x 3 x H x W batch")
        h, w = int(dims[-2]), int(dims[-1])
        self.name = f"triton-{protocol}:{model}"
        self.device = f"triton {url}"
        self.input_shape = (1, 3, h, w)
        self.max_batch = self.max_batch_size or int(shape[0])
        self.info = self._info(config, (h, w))
        self.precision = self.info.precision  # "unknown" where the config does not say

    @staticmethod
    def _as_dict(message: Any) -> dict[str, Any]:
        """A gRPC protobuf answer as the HTTP client's dict (int64 fields as ints)."""
        if isinstance(message, dict):
            return message
        from google.protobuf.json_format import MessageToDict

        d = MessageToDict(message, preserving_proto_field_name=True)
        return json.loads(json.dumps(d), parse_int=int)

    def _info(self, config: dict[str, Any], size: tuple[int, int]) -> ModelInfo:
        """The ModelInfo the config's parameters record (triton-repo's), else the defaults."""
        params = {k: (v or {}).get("string_value", "") for k, v in
                  (config.get("parameters") or {}).items()}  # fmt: skip
        meta: dict[str, Any] = {"input_size": list(size)}
        for key in ("min_depth", "max_depth"):
            if params.get(key):
                meta[key] = float(params[key])
        if params.get("variant"):
            with contextlib.suppress(ValueError):
                meta["variant"] = json.loads(params["variant"])
        meta["backbone"] = params.get("backbone", "")
        meta["precision"] = params.get("precision") or "unknown"
        return model_info(meta)

    def model_names(self) -> list[str]:
        """The models the server's repository index lists."""
        index = triton_call(
            "the repository index", self.url, self.client.get_model_repository_index
        )
        if not isinstance(index, list):
            index = self._as_dict(index).get("models", [])
        return [str(m.get("name")) for m in index]

    def _request(self, x: np.ndarray) -> np.ndarray:
        client = _client_module(self.protocol)
        dtype = NUMPY_TYPES.get(self.datatype, np.float32)
        data = np.ascontiguousarray(x, dtype=dtype)
        if self.max_batch_size == 0 and data.shape[0] != self.max_batch:
            raise TritonError(f"{self.model} takes exactly {self.max_batch} images per request")
        inp = client.InferInput(self.input_name, list(data.shape), self.datatype)
        inp.set_data_from_numpy(data)
        out = client.InferRequestedOutput(self.output_name)
        kwargs = ({"client_timeout": self.timeout} if self.protocol == "grpc"
                  else {})  # fmt: skip
        result = triton_call("an inference request", self.url, self.client.infer, self.model,
                             [inp], outputs=[out], **kwargs)  # fmt: skip
        return np.asarray(result.as_numpy(self.output_name), dtype=np.float32)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self._check_open()
        x = check_batch(self.name, batch, self.input_shape)
        step = self.max_batch or len(x)
        return np.concatenate([self._request(x[i : i + step]) for i in range(0, len(x), step)])

    def _release_resources(self) -> None:
        self.client.close()
