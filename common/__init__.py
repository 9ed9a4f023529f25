"""The shared library of the IPO valuation model-serving suite."""
