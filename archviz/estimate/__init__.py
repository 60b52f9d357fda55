"""The cost of a network: FLOPs, receptive fields and the memory of a training step.

``flops`` and ``receptive`` are views of a Trace (no torch, no model walk); ``memory``
simulates a training step on the meta device (torch imported on first use); ``report``
puts them together as the JSON contract of `archviz cost` and `archviz compare`.
"""
