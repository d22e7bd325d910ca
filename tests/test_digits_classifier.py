"""The LeNet-style classifier behind the digits toy's FID: accurate on held-out digits, cached."""

from __future__ import annotations

import numpy as np

from selfconsume.digits import classifier
from selfconsume.digits import data as data_lib


def test_classifier_reaches_high_test_accuracy_and_is_cached(tmp_path):
  digits = data_lib.load("sklearn")
  params, info = classifier.get_or_train(digits, str(tmp_path))
  assert info["test_accuracy"] >= 0.93, info
  apply_fn = classifier.make_apply(digits.num_classes)
  logits, features = classifier.embed(apply_fn, params, digits.test_images[:700])
  assert logits.shape == (digits.test_images[:700].shape[0], 10)
  assert features.shape[1] == 128 and np.all(np.isfinite(features))
  # The second call reads the cache instead of training again: same parameters.
  cached, cached_info = classifier.get_or_train(digits, str(tmp_path))
  assert cached_info == info
  np.testing.assert_array_equal(cached["Dense_1"]["kernel"], params["Dense_1"]["kernel"])
