"""The learning loop, one module per step.

Each step has its ``*_start`` (the web process: check the parameters, write
rows, queue a job once the transaction commits) and its ``*_run`` (the
worker: the body ``tasks.py`` hands to ``run_job``):

- ``base_training``: a base model from a dataset, or a folder adopted;
- ``round_generation``: a round whose images a version draws;
- ``round_scoring``: a round scored (and re-scored) by a reward model;
- ``reward``: the reward model from every live rating;
- ``finetune``: a version from the ratings with an objective, or its control;
- ``generation``: filtered generation for the Generate page and the API;
- ``review``: a round from a version's reward-filtered images;
- ``rounds``: a failed generation's round abandoned or retried;
- ``chains``: a retraining run, and what runs after each of its jobs.

``jobs`` is the job queue they share, ``params`` the parameters a user may
send and ``worker`` what every run function shares. Nothing here imports
torch at module level.
"""
