"""Lowerings of the convolution and pooling family (filled in below)."""
