"""Labelling: answers from every tier, rated by a judge program, written as an evalset."""
from route_switch.labeling.label import estimate, label, read_queries

__all__ = ["label", "estimate", "read_queries"]
