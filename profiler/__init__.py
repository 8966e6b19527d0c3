"""Everything that runs on real hardware: kernels, collectives, the profile sweep and table writer.

Imports torch and triton; nothing under hwmodels/policies/simulator imports this package.
"""
