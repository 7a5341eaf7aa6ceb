"""xas-features: featurizers (M3GNet, CHGNet, ACSF/SOAP, crystal graphs) and local descriptors.

Skeleton: the featurizers arrive with the xas-features issue.
"""

__version__ = "0.1.0"
