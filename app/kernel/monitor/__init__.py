"""Monitoring: hardware samples (CPU, RAM, GPU) and request metrics, published as kernel events."""
