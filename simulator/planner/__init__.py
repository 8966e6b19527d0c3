"""Capacity planner: search layouts and settings for the cheapest deployment that meets latency SLOs."""
from simulator.planner.capacity import CapacityResult, ProbeResult, find_capacity, scan_capacity, slo_metrics
from simulator.planner.config import CapacitySearchConfig, PlanConfig, SearchSpace, load_plan_config, validate_plan_config
from simulator.planner.search import Deployment, LayoutOutcome, PlanResult, evaluate_layout, plan_serve
from simulator.planner.space import Candidate, enumerate_candidates

__all__ = ["CapacityResult", "CapacitySearchConfig", "Candidate", "Deployment", "LayoutOutcome", "PlanConfig",
           "PlanResult", "ProbeResult", "SearchSpace", "enumerate_candidates", "evaluate_layout", "find_capacity",
           "load_plan_config", "plan_serve", "scan_capacity", "slo_metrics", "validate_plan_config"]
