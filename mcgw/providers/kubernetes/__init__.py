"""The Kubernetes provider: listing member-cluster objects and writing status through kubernetes.aio."""
