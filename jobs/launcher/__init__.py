"""The job launcher: `tidescale submit` and `tidescale jobs list/get/logs/delete`, Arena-style.

`kinds` (the YAML vocabulary: InferenceService, TrainingJob, BatchJob), `render` (a job -> the Kubernetes
objects, all owned by one root ConfigMap), `status` (the cluster's objects -> a job's phase and views),
`client` (the shell over the Kubernetes API) and `cli` (the commands).
"""
