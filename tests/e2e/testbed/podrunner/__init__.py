"""An emulated kubelet for the test bed: one runner per member cluster runs that cluster's pods as local
processes, each pod in network, mount, IPC, UTS and PID namespaces of its own.

``python -m tests.e2e.testbed.podrunner --help`` lists its options; ``ClusterSet`` starts one per cluster.
"""
