"""The rotation (gauge) demonstration of the paper's appendix argument."""
