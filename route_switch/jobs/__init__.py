"""Scheduled jobs: the weekly re-optimisation (``reoptimize``) and its drift check."""
