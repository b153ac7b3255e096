"""ClassAMI and V-measure (Musgrave et al. 2022; Ericsson et al. 2023's best label-free choices): how well the
predicted classes agree with k-means clusters (k = classes) of the target features."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from normda.validators.base import Outputs, register


@lru_cache(maxsize=1)  # ami and v_measure of one evaluation share the clustering
def feature_clusters(target: Outputs, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(k-means cluster of each target sample with k the number of classes, its predicted class)."""
    from sklearn.cluster import KMeans  # only runs that compute these validators import scikit-learn

    classes = target.logits.shape[1]
    clusters = KMeans(n_clusters=classes, n_init=10, random_state=seed).fit_predict(target.features.double().numpy())
    return clusters, target.logits.argmax(dim=1).numpy()


@register("ami", "max", ("target",))
def adjusted_mutual_information(target: Outputs) -> float:
    from sklearn.metrics import adjusted_mutual_info_score

    return float(adjusted_mutual_info_score(*feature_clusters(target)))


@register("v_measure", "max", ("target",))
def v_measure(target: Outputs) -> float:
    from sklearn.metrics import v_measure_score

    return float(v_measure_score(*feature_clusters(target)))
