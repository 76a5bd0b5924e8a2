"""A sentence-transformers BERT encoder (all-MiniLM-L6-v2 and its kin) run with numpy.

It reads the model folder sentence-transformers writes (``config.json``, ``tokenizer.json``,
``model.safetensors``, ``1_Pooling/config.json``, ``modules.json``) and computes what
``SentenceTransformer(path).encode(texts, normalize_embeddings=True)`` computes: BERT's
forward pass, mean pooling over the real tokens, L2 normalisation. The weights are the model's
own; only the runtime differs. Written against numpy because the maintained runtimes cost far
more than they give here: torch (through sentence-transformers) is hundreds of megabytes and
seconds of import for a six-layer model whose forward pass is a dozen matrix products, and
onnxruntime needs an ONNX export that no packaged copy of the model ships. The tokenizer is
the model's own ``tokenizer.json`` run by Hugging Face ``tokenizers``.

Nothing is downloaded, ever: a folder (or a zip of one) on disk is the only input.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

# Abramowitz & Stegun 7.1.26: erf with an absolute error below 1.5e-7, vectorised (numpy has no erf).
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _erf(x: np.ndarray) -> np.ndarray:
    sign = np.sign(x)
    ax = np.abs(x)
    t = 1.0 / (1.0 + _P * ax)
    poly = t * (_A[0] + t * (_A[1] + t * (_A[2] + t * (_A[3] + t * _A[4]))))
    return sign * (1.0 - poly * np.exp(-ax * ax))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class ModelFiles:
    """The files of a sentence-transformers model folder, read from a directory or a zip of one."""

    NEEDED = ("config.json", "tokenizer.json", "model.safetensors")

    def __init__(self, source: Path) -> None:
        self.source = source
        self._zip: zipfile.ZipFile | None = zipfile.ZipFile(source) if source.is_file() else None
        self._prefix = ""
        if self._zip is not None:
            names = self._zip.namelist()
            configs = [n for n in names if (n == "config.json" or n.endswith("/config.json")) and "Pooling" not in n]
            config = min(configs, key=len) if configs else None  # the model's own, at the folder's top
            self._prefix = config[: -len("config.json")] if config else ""
        missing = [n for n in self.NEEDED if not self.exists(n)]
        if missing:
            raise FileNotFoundError(f"{source} is not a sentence-transformers model: it lacks {', '.join(missing)}")

    def exists(self, name: str) -> bool:
        if self._zip is not None:
            return self._prefix + name in self._zip.namelist()
        return (self.source / name).is_file()

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(self._prefix + name)
        return (self.source / name).read_bytes()

    def json(self, name: str, default: Any = None) -> Any:
        return json.loads(self.read(name)) if self.exists(name) else default


class Encoder:
    """``encode(texts) -> array (len(texts), dim)`` of unit-length sentence embeddings."""

    def __init__(self, source: Path) -> None:
        from safetensors.numpy import load as load_safetensors
        from tokenizers import Tokenizer

        files = ModelFiles(source)
        self.source = source
        cfg = files.json("config.json")
        if cfg.get("model_type", "bert") != "bert":
            raise ValueError(f"{source}: model_type {cfg.get('model_type')!r} is not BERT; only BERT encoders "
                             "(all-MiniLM-L6-v2, all-MiniLM-L12-v2, bge-small, ...) are supported")
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        st = files.json("sentence_bert_config.json", {})
        self.max_length = int(st.get("max_seq_length", 256))
        pooling = files.json("1_Pooling/config.json", {"pooling_mode_mean_tokens": True})
        if not pooling.get("pooling_mode_mean_tokens", False):
            raise ValueError(f"{source}: only mean pooling is supported (1_Pooling/config.json)")
        modules = files.json("modules.json", [])
        self.normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules) or not modules
        self.tokenizer = Tokenizer.from_str(files.read("tokenizer.json").decode())
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        raw = load_safetensors(files.read("model.safetensors"))
        self.w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in raw.items()
                  if np.issubdtype(v.dtype, np.floating)}
        # Linear layers as contiguous (in, out) matrices: x @ W is one BLAS call on a 2-D array.
        for key in [k for k in self.w if k.endswith(".weight") and self.w[k].ndim == 2 and k.startswith("encoder.")]:
            self.w[key] = np.ascontiguousarray(self.w[key].T)
        self.dim = int(self.w["embeddings.word_embeddings.weight"].shape[1])
        from threadpoolctl import ThreadpoolController

        self._blas = ThreadpoolController()

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        # One BLAS thread: these matrices are small, and on a busy machine BLAS threads waiting
        # for each other cost several times the arithmetic.
        with self._blas.limit(limits=1, user_api="blas"):
            out = [self._batch(texts[i: i + batch_size]) for i in range(0, len(texts), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def _batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch([t if t.strip() else " " for t in texts])
        n = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), n), np.int64)
        types = np.zeros((len(texts), n), np.int64)
        mask = np.zeros((len(texts), n), np.float32)
        for i, e in enumerate(encodings):
            ids[i, : len(e.ids)] = e.ids
            types[i, : len(e.ids)] = e.type_ids
            mask[i, : len(e.ids)] = 1.0
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][np.arange(n)][None, :, :]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        # Padded positions get -inf-like scores, so no token attends to them.
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        for layer in range(self.layers):
            x = self._layer(x, bias, f"encoder.layer.{layer}.")
        summed = (x * mask[:, :, None]).sum(1)
        pooled = summed / np.clip(mask.sum(1, keepdims=True), 1e-9, None)
        if self.normalize:
            pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return pooled.astype(np.float32)

    def _layer(self, x: np.ndarray, bias: np.ndarray, p: str) -> np.ndarray:
        w = self.w
        b, n, d = x.shape
        h = self.heads
        size = d // h

        def dense(v: np.ndarray, name: str) -> np.ndarray:
            weight = w[name + ".weight"]
            return (v.reshape(-1, v.shape[-1]) @ weight + w[name + ".bias"]).reshape(*v.shape[:-1], weight.shape[1])

        def split(v: np.ndarray) -> np.ndarray:
            return v.reshape(b, n, h, size).transpose(0, 2, 1, 3)

        q = split(dense(x, p + "attention.self.query"))
        k = split(dense(x, p + "attention.self.key"))
        v = split(dense(x, p + "attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + bias
        scores = scores - scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
        attended = _layer_norm(dense(context, p + "attention.output.dense") + x,
                               w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"],
                               self.eps)
        hidden = _gelu(dense(attended, p + "intermediate.dense"))
        return _layer_norm(dense(hidden, p + "output.dense") + attended,
                           w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
