"""The pure cost models: a plan on a cluster for a workload, into bytes per GPU and seconds per step.

plan, workload, cluster and topology describe what runs where; shard and partial say which
parameters each GPU holds and trains; memory/ and timing/ are the two models, comm the traffic
between them; evaluate joins them; calibration holds the few measured constants; inference
is the serving memory model. No file I/O here except `inputs`, which turns the input files into
these objects.
"""
