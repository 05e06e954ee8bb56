"""Ember: a self-hosted, AWS Lambda-compatible serverless function platform."""

__version__ = "0.1.0"
