"""Pure decisions, engine-agnostic: scheduling, KV-cache management, routing. No SimPy, no torch."""
