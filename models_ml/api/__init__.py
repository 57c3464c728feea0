"""The learning loop over the REST API, one module per capability: jobs,
model versions, training, rounds that generate, retraining runs, the
promotion gate, review and filtered generation; ``urls.py`` routes them."""
