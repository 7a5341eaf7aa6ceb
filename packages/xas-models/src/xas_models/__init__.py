"""xas-models: model definitions, checkpoint format, model-zoo client and predict API.

Skeleton: the models arrive with the OmniXAS end-to-end issue.
"""

__version__ = "0.1.0"
