"""asv benchmarks for fastlinear; see ../README.md."""
