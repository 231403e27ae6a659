# syntax=docker/dockerfile:1
# The project's three images from one set of wheels: the producer, the transformer and
# the operator differ only in the command they run, so they share the build stage and
# the runtime stage and each adds its ENTRYPOINT:
#   docker build --target producer    -t energy-pipeline/energy-producer:0.1.0 .
#   docker build --target transformer -t energy-pipeline/energy-transformer:0.1.0 .
#   docker build --target operator    -t energy-pipeline/energy-operator:0.1.0 .
# (make images builds all three.)

# The project's Python (pyproject's requires-python, the tests' 3.11), and the Rust
# that builds the transformer's fast path (services/fastpath).
ARG PYTHON_VERSION=3.11
ARG RUST_VERSION=1.95

# ---- the Rust toolchain, copied into the build stage ----
FROM rust:${RUST_VERSION}-slim AS rust

# ---- build: the project's wheels (energy-fastpath from Rust with maturin, then
# energy-pipeline) and the wheels of their dependencies ----
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH
COPY --from=rust /usr/local/rustup /usr/local/rustup
COPY --from=rust /usr/local/cargo /usr/local/cargo
# cargo links with the C compiler.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services/ services/
COPY operator/ operator/
COPY ksql/ ksql/
RUN pip wheel --wheel-dir /wheels ./services/fastpath .

# ---- runtime: the wheels installed into a slim image of the same Python ----
FROM python:${PYTHON_VERSION}-slim AS runtime
# A read-only root filesystem: Python writes no bytecode, logs go to stdout.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels energy-pipeline \
    && groupadd --system --gid 10001 energy \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin energy
WORKDIR /tmp
# Numeric, so that Kubernetes can check runAsNonRoot; the chart's securityContext
# uses the same UID and GID.
USER 10001:10001

FROM runtime AS producer
EXPOSE 8000
ENTRYPOINT ["energy-producer"]

FROM runtime AS transformer
EXPOSE 8001
ENTRYPOINT ["energy-transformer"]

FROM runtime AS operator
EXPOSE 8080 9090
ENTRYPOINT ["energy-operator"]
