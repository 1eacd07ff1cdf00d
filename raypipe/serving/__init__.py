"""Serving: the model registry's versions behind an autoscaling Ray Serve HTTP endpoint.

``serve_model(cfg)`` deploys (``raypipe serve``); :mod:`raypipe.serving.app` is the Serve
application, built from typed :mod:`raypipe.serving.settings`; :mod:`raypipe.serving.request`
holds the request handling that needs no Ray.
"""

from raypipe.serving.deploy import ServeInfo, export_serve_config, serve_model
from raypipe.serving.settings import EndpointSettings, endpoint_settings

__all__ = ["serve_model", "export_serve_config", "ServeInfo", "EndpointSettings", "endpoint_settings"]
