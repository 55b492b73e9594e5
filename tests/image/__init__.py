"""The container image built from the Dockerfile by hack/image, unpacked and run as a runtime would."""
