"""The ingress-nginx provider: Ingresses + ``nginx.ingress.kubernetes.io/*`` → Gateway API.

``convert(objects, options)`` is the provider seam of :mod:`converters.api`.
"""

from converters.ingress_nginx.convert import convert

__all__ = ["convert"]
