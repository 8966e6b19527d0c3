"""What hardware and models are, and what an operation costs (datasheet facts, SI units)."""
