"""What the latent space is worth with few labels: a classifier on the posterior means μ against one on
raw pixels and one on PCA features of the same size (Kingma et al., 2014, "Semi-supervised learning with
deep generative models", M1: a classifier on a VAE's latent features).

Every representation gets the same labelled images in each draw (a paired comparison), the same
classifier (multinomial logistic regression) and the same test split. The unlabelled training images
may shape a representation, as they shaped the VAE: PCA is fitted on all of them, and each feature is
standardised with their statistics; only the classifier sees labels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABELS_PER_CLASS = (1, 5, 10, 50, 100)
DRAWS = 10
REPRESENTATIONS = ("latent μ", "PCA", "pixels")
UNLABELLED_FIT = 5_000


@dataclass
class FewLabels:
    labels_per_class: tuple[int, ...]
    accuracy: dict[str, np.ndarray]  # representation -> (len(labels_per_class), draws) test accuracies
    dims: dict[str, int]  # representation -> feature size

    def mean(self, name: str) -> np.ndarray:
        return self.accuracy[name].mean(1)

    def std(self, name: str) -> np.ndarray:
        return self.accuracy[name].std(1)

    def best(self, k_index: int) -> str:
        """The representation with the highest mean accuracy at labels_per_class[k_index]."""
        return max(self.accuracy, key=lambda name: self.accuracy[name][k_index].mean())


def labelled_subset(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `per_class` images of every class (all of a class that has fewer), drawn without replacement."""
    picks = [rng.choice(np.flatnonzero(y == c), size=min(per_class, int((y == c).sum())), replace=False)
             for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def few_labels(z_train: np.ndarray, z_test: np.ndarray, x_train: np.ndarray, x_test: np.ndarray,
               y_train: np.ndarray, y_test: np.ndarray, labels_per_class=LABELS_PER_CLASS, draws: int = DRAWS,
               seed: int = 0) -> FewLabels:
    """Test accuracy of logistic regression on μ (z_*), on PCA features of z's size and on pixels (x_*,
    flattened), with each number of labels per class, over `draws` seeded draws of the labelled set.
    The same seed gives the same numbers."""
    if not labels_per_class or min(labels_per_class) < 1 or draws < 1:
        raise ValueError(f"labels per class must be at least 1 and draws at least 1, got {labels_per_class}, {draws}")
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x_train = np.asarray(x_train, dtype=np.float32).reshape(len(x_train), -1)
    x_test = np.asarray(x_test, dtype=np.float32).reshape(len(x_test), -1)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    z_train, z_test = np.asarray(z_train), np.asarray(z_test)
    # PCA and the standardisation learn from at most UNLABELLED_FIT unlabelled images (a seeded subset of a
    # bigger split), and only the labelled rows of the training split are ever transformed: the 64x64 shapes
    # (58,982 x 4,096 pixels) peaked at 4.3 GB when every representation of every image was built.
    fit_rows = np.arange(len(x_train)) if len(x_train) <= UNLABELLED_FIT else \
        np.sort(np.random.default_rng(seed).choice(len(x_train), UNLABELLED_FIT, replace=False))
    pca = PCA(n_components=z_train.shape[1], random_state=seed).fit(x_train[fit_rows])
    identity = lambda a: a  # noqa: E731
    sources = {"latent μ": (z_train, z_test, identity), "PCA": (x_train, x_test, pca.transform),
               "pixels": (x_train, x_test, identity)}
    prepared = {}  # name -> (training source, its transform, the fitted scaler, test features)
    for name, (train, test, transform) in sources.items():
        scaler = StandardScaler().fit(transform(train[fit_rows]))  # unlabelled statistics; constant pixels stay 0
        prepared[name] = (train, transform, scaler, scaler.transform(transform(test)))
    accuracy = {name: np.zeros((len(labels_per_class), draws)) for name in REPRESENTATIONS}
    for i, per_class in enumerate(labels_per_class):
        for draw in range(draws):
            chosen = labelled_subset(y_train, per_class, np.random.default_rng([seed, per_class, draw]))
            for name, (train, transform, scaler, test) in prepared.items():
                labelled = scaler.transform(transform(train[chosen]))
                classifier = LogisticRegression(max_iter=2000).fit(labelled, y_train[chosen])
                accuracy[name][i, draw] = float((classifier.predict(test) == y_test).mean())
    return FewLabels(tuple(labels_per_class), accuracy,
                     {name: prepared[name][3].shape[1] for name in REPRESENTATIONS})
