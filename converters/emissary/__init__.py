"""Emissary-ingress (Mapping, Host, TLSContext, TCPMapping, Listener, Module, AuthService,
RateLimitService; CRDs v1/v2/v3alpha1, ``getambassador.io/config`` annotations and
``ambassador``-class Ingresses) → Gateway API and Envoy Gateway policies."""

from converters.emissary.convert import EmissaryOptions, convert, convert_with

__all__ = ["EmissaryOptions", "convert", "convert_with"]
