"""xas-eval: metrics (eta, win rates, RSE, PCC, edge-energy error), reports and plots.

Skeleton: the metrics arrive with the OmniXAS end-to-end issue.
"""

__version__ = "0.1.0"
