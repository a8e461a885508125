"""CelebA: 40 binary face attributes predicted from 64×64 aligned face images.

``files`` finds and checks the release files, ``annotations`` parses them, ``splits`` maps
the partition to image lists, ``cache`` stores the preprocessed images, ``model`` holds the
shared CNN, ``metrics`` the per-attribute F1, and ``spec`` the benchmark declaration.
"""
