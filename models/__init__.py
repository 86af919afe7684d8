"""Blocks, the hybrid backbone, heads and the Lightning modules."""
