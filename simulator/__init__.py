"""SimPy processes that replay a workload through a cluster of replicas (no torch, no wall clock)."""
