"""Jobs: the resource model, the pure heterogeneous scheduler, workload kinds and the launcher shell."""
