"""Building blocks: temporal encoders, joint cross-attention, heads."""
