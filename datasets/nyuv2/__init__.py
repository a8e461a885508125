"""NYUv2: 13-class segmentation, depth and surface normals (MTAN .npy release)."""
