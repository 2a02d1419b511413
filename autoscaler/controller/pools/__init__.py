"""The controller's node-pool providers (KWOK, Cluster API), node manifests, drain, the nodes view."""
