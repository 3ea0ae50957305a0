"""advisor: how to train an image classifier on your data, budget and hardware — scratch, fine-tune,
feature extraction or retrain — with short real PyTorch probe runs to check the advice.

The entry points that train or measure (``recommend``, ``probe``, ``train``, ``profile``, ``measure_throughput``) load
torch on first use, so importing advisor, its schemas, rules and decision code stays light.
"""

from .errors import AdvisorError, BackboneError, BudgetError, DataError, RulesError
from .schemas import (
    DataFacts, DataProfile, ProbeResult, Quantity, Recommendation, Similarity, StrategyEstimate, TrainResult,
)

_LAZY = {"recommend": "api", "profile": "api", "measure_throughput": "measure.throughput", "probe": "api", "train": "training"}

__all__ = [
    "recommend", "profile", "probe", "measure_throughput", "train",
    "Recommendation", "ProbeResult", "TrainResult", "DataProfile", "DataFacts", "Similarity", "StrategyEstimate", "Quantity",
    "AdvisorError", "DataError", "BudgetError", "BackboneError", "RulesError",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'advisor' has no attribute {name!r}")
