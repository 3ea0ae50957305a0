"""advisor: how to train an image classifier on your data, budget and hardware — scratch, fine-tune,
feature extraction or retrain — with short real PyTorch probe runs to check the advice."""

from .api import measure_throughput, profile, recommend
from .errors import AdvisorError, BackboneError, BudgetError, DataError, RulesError
from .probe import probe
from .schemas import DataFacts, DataProfile, ProbeResult, Quantity, Recommendation, Similarity, StrategyEstimate

__all__ = [
    "recommend", "profile", "probe", "measure_throughput",
    "Recommendation", "ProbeResult", "DataProfile", "DataFacts", "Similarity", "StrategyEstimate", "Quantity",
    "AdvisorError", "DataError", "BudgetError", "BackboneError", "RulesError",
]
__version__ = "0.1.0"
