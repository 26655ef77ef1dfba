"""What an operator sees of a running job: Prometheus scrapes turned into signals (`ctxsync signals`) and
one event's path through every sink (`ctxsync trace`)."""
