"""Layer 1: architectures as plain data. Nothing here imports torch."""

from archviz.spec.loader import dump_spec, load_spec_file, parse_spec
from archviz.spec.model import Layer, Spec
from archviz.spec.resolve import Resolved, resolve

__all__ = ["Layer", "Resolved", "Spec", "dump_spec", "load_spec_file", "parse_spec", "resolve"]
