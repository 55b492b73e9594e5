"""Providers: where objects come from (Kubernetes API servers, files) and where status goes back."""
