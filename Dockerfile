# The mcgw controller image: Debian bookworm's Python 3.11, a venv with mcgw's wheel and its dependencies
# and nothing else (no Envoy: mcgw provisions Envoy pods from their own image).
# `make image` builds it without a Docker engine (hack/image/ runs these very steps); `docker build .` works too.

# Debian's python3 on bookworm-slim: the same interpreter the venv was built against in both stages.
FROM debian:bookworm-slim AS debian-python
RUN apt-get update \
 && apt-get upgrade -y \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

# Builds mcgw's wheel and installs it, with its dependencies, into /opt/mcgw.
FROM debian-python AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/mcgw
WORKDIR /src
# The dependencies first, from pyproject.toml alone: a change to mcgw's sources does not reinstall them.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && /opt/mcgw/bin/pip install --no-cache-dir --quiet --requirement /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY README.md ./
COPY mcgw mcgw
COPY xdsserver xdsserver
# pip, and the setuptools venv brings along, are needed to install but not to run: they stay behind.
RUN /opt/mcgw/bin/pip wheel --no-cache-dir --quiet --no-deps --wheel-dir /wheels . \
 && /opt/mcgw/bin/pip install --no-cache-dir --quiet /wheels/mcgw-*.whl \
 && /opt/mcgw/bin/pip uninstall --yes --quiet setuptools pip

# The runtime: the interpreter and the venv, run as an unprivileged numeric user.
FROM debian-python
COPY --from=build /opt/mcgw /opt/mcgw
ENV PATH=/opt/mcgw/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["mcgw"]
CMD ["--help"]
