"""xas-train: DeepSpeed trainer, launchers, recipes, MLflow tracking and zoo publishing.

Skeleton: the trainer arrives with the OmniXAS end-to-end issue.
"""

__version__ = "0.1.0"
