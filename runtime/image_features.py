"""A scikit-learn transformer: image paths (or images) in, features out.

    from fexport.runtime import ImageFeatures    # imported on first use: the sklearn extra
    make_pipeline(ImageFeatures("vgg16_feat.onnx"), LogisticRegression()).fit(paths, labels)

`fit` learns nothing. The onnxruntime session is opened on first use and dropped when pickled,
so the transformer survives `clone`, pickling and joblib workers in `cross_val_score`.
"""

from __future__ import annotations

import numpy as np

from fexport.extras import require

from .extractor import FeatureExtractor

# scikit-learn stays optional: without it, importing this module names the extra.
_base = require("sklearn.base", "fexport.runtime.ImageFeatures")


class ImageFeatures(_base.TransformerMixin, _base.BaseEstimator):
    def __init__(self, model_path, device="cpu", batch_size=32, threads=None, input_size=None,
                 backend="auto", precision="auto"):
        self.model_path = model_path
        self.device = device
        self.backend = backend
        self.precision = precision
        self.batch_size = batch_size
        self.threads = threads
        self.input_size = input_size

    def fit(self, X, y=None):
        return self

    def transform(self, X) -> np.ndarray:
        return self._get_extractor().extract(list(X), self.batch_size)

    def _get_extractor(self) -> FeatureExtractor:
        if getattr(self, "_extractor", None) is None:
            self._extractor = FeatureExtractor(self.model_path, self.device, self.threads,
                                               backend=self.backend, precision=self.precision,
                                               input_size=self.input_size)
        return self._extractor

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_extractor", None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = False
        return tags
