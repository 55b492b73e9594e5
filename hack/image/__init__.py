"""Build the repository's Dockerfile into an OCI image without a Docker engine.

The steps of the Dockerfile itself are run (``dockerfile.py`` reads them): RUN in a chroot of the stage's
root filesystem (``chroot.py``), COPY from the build context or an earlier stage, and ENV, USER, WORKDIR,
ENTRYPOINT, CMD into the image config, so the Dockerfile and the image cannot drift apart. The one base
image it knows, ``debian:bookworm-slim``, is made with debootstrap (``rootfs.py``). Every step that
changes files becomes a layer (``layers.py``), cached in ``~/.cache/mcgw/image/`` by what it depends on,
as Docker's build cache does; ``oci.py`` writes the OCI image layout and a ``docker load`` archive.
"""
