"""Shared parts of the dense-prediction benchmarks: SegNet-MTAN, the MTAN .npy loader, losses and metrics."""
