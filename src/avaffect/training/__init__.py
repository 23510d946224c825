"""Training: losses, the Lightning module and data module, and the run driver."""
