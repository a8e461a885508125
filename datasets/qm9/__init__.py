"""QM9: graphs converted from qm9pack, task spec, model and splits."""
