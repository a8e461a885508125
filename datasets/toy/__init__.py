"""The two-task 2-D toy problem of "Conflict-Averse Gradient Descent for Multi-task Learning"."""
