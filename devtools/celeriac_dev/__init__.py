"""A local Kubernetes control plane without containers, for the demo and the cluster tests.

etcd (Debian), kube-apiserver, kube-controller-manager, kube-scheduler (built from Go
modules by hack/build-control-plane.sh) and kwok for fake nodes, all as local processes.
"""
