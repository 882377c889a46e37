"""driftcar's statistics engine: profiles, window sketches, drift tests, model quality.

Pure numpy + scipy, no servers; shared by the sidecar, ``driftcar profile``
and the demo. The contract (names may gain extras but not change):

- :func:`profile` -> :class:`Profile` (reference distributions, versioned msgpack file)
- ``prof.new_window()`` -> :class:`WindowSketch` (``update``, ``merge``, ``feature``); a categorical
  column may be given already coded (:class:`Encoded`: codes into distinct keys), counted per key
- :func:`evaluate_drift` -> :class:`DriftReport` of :class:`DriftResult` (one
  deciding result per feature; ``describe()`` / ``comparison`` say how it was
  decided, like with like), configured by :class:`DriftConfig` /
  :class:`FeatureDriftConfig`; :class:`VerdictTracker` adds hysteresis;
  the same tests one feature at a time: :class:`KS`, :class:`PSI`, ... (:data:`TESTS`)
- :class:`LabelJoiner`, :func:`classification_scores`, :func:`regression_scores`,
  :func:`estimated_accuracy`, :class:`PageHinkley` for model quality
"""

from driftcar.stats._columns import Encoded
from driftcar.stats.adwin import ADWIN
from driftcar.stats.change import PageHinkley
from driftcar.stats.drift import (
    Comparison,
    DriftConfig,
    DriftReport,
    DriftResult,
    FeatureDriftConfig,
    adjust_pvalues,
    evaluate_drift,
    evaluate_label_drift,
)
from driftcar.stats.drift_tests import KS, PSI, TESTS, ChiSquare, DriftTest, Hellinger, JensenShannon, Wasserstein
from driftcar.stats.errors import ProfileError
from driftcar.stats.profile import (
    LABEL,
    MULTIVARIATE,
    OTHER,
    PREDICTION,
    FeatureProfile,
    Profile,
    ProfileBuilder,
    profile,
)
from driftcar.stats.quality import LabelJoiner, classification_scores, estimated_accuracy, regression_scores
from driftcar.stats.sketch import CategoricalSketch, NumericSketch, WindowSketch
from driftcar.stats.verdict import VerdictChange, VerdictTracker
from driftcar.stats.windows import WindowSeries

__all__ = [
    "profile",
    "Profile",
    "ProfileBuilder",
    "ProfileError",
    "FeatureProfile",
    "WindowSketch",
    "Encoded",
    "NumericSketch",
    "CategoricalSketch",
    "WindowSeries",
    "DriftConfig",
    "FeatureDriftConfig",
    "DriftResult",
    "Comparison",
    "DriftReport",
    "evaluate_drift",
    "evaluate_label_drift",
    "adjust_pvalues",
    "DriftTest",
    "PSI",
    "KS",
    "Wasserstein",
    "JensenShannon",
    "ChiSquare",
    "Hellinger",
    "TESTS",
    "VerdictTracker",
    "VerdictChange",
    "LabelJoiner",
    "classification_scores",
    "regression_scores",
    "estimated_accuracy",
    "PageHinkley",
    "ADWIN",
    "OTHER",
    "PREDICTION",
    "LABEL",
    "MULTIVARIATE",
]
