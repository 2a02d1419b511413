"""The job launcher: `tidescale submit` and `tidescale jobs list/get/logs/delete`, Arena-style.

`kinds` (the YAML vocabulary: InferenceService, TrainingJob, BatchJob), `render` (a job -> the Kubernetes
objects, all owned by one root ConfigMap), `status` (the cluster's objects -> a job's phase and views),
`queueing` (a pending job's place in its queue), `external` (kinds submitted by another package's client:
the Pipeline), `local` (a job run on this machine: its record and phase) and `processes` (its process),
`client` (the shell over the Kubernetes API) and `cli` (the commands).
"""
