"""Serving: the model registry's versions behind an autoscaling Ray Serve HTTP endpoint.

``serve_model(cfg)`` deploys (``raypipe serve``); :mod:`raypipe.serving.app` is the Serve
application; :mod:`raypipe.serving.request` holds the request handling that needs no Ray.
"""

from raypipe.serving.deploy import export_serve_config, serve_model

__all__ = ["serve_model", "export_serve_config"]
