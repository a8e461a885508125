"""Cityscapes: 7-class segmentation and inverse depth (MTAN .npy release or converted official files)."""
