"""Trainer, entry points, sweeps and result tables of the MTL benchmark suite."""
