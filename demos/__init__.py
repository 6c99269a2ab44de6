"""Runnable demos: `lookinside demo NAME` or `python -m demos.NAME`."""
