"""A seeded chaos soak of the whole program: `python -m benchmarks.chaos --seed N --minutes M
[--instances 2]` runs the real bot (`python -m bot` processes, polling, or behind a webhook
with two) against the fake Bot API, with a seeded workload (actors.py) and seeded faults
(faults.py), then checks that nothing was lost, doubled or misreported (checks.py). The seed
names the workload's decisions and the fault plan; timing is the machine's, so a replay meets
the same people doing the same things under the same faults, not the same interleaving."""
