"""The web console: live scaling events, every ScalingPolicy with its replicas and limiting rule, a
replicas-vs-metric chart, GPU nodes, applications and queues, on one dependency-free page (`page.html`).

`model` builds the views from plain values (pure); `hub` holds the live state and the event stream's
subscribers; `server` is the shell: HTTP routes, cluster reads, and the standalone `tidescale console`.
The controller serves the same console on its own HTTP endpoint (`autoscaler.controller.wiring`).
"""
