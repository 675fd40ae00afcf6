# syntax=docker/dockerfile:1
# sonic-gateway service image. Two stages: `build` makes a virtual environment from uv.lock exactly
# (the same `uv sync --frozen` as scripts/_env.sh, without the dev group) and installs the project
# into it as a wheel; `runtime` copies only that environment onto the same slim Python base and
# runs `sonic-gateway serve` as an unprivileged user. docs/operations.md explains the settings.
#
#   docker build -t sonic-gateway .
#   docker run --rm -p 8080:8080 sonic-gateway                       # emulator backend, no AWS
#   docker run --rm -p 8080:8080 -e SONIC_GATEWAY_BACKEND=bedrock \
#     -e SONIC_GATEWAY_SERVER__PUBLIC_URL=https://voice.example.com \
#     -e SONIC_GATEWAY_TWILIO__AUTH_TOKEN=... sonic-gateway          # plus AWS credentials

# Both stages must use the same interpreter: the environment's scripts point at its path.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# The uv release scripts/_env.sh installs; from PyPI like there, so no other registry is needed.
ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/sonic-gateway
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the lockfile changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --python /usr/local/bin/python3.12
# Then the project itself, as a wheel (--no-editable), so the runtime needs no source tree.
COPY README.md LICENSE ./
COPY actors ./actors
COPY audiocodec ./audiocodec
COPY gateway ./gateway
RUN uv sync --frozen --no-dev --no-editable --python /usr/local/bin/python3.12

FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it (deploy/k8s/deployment.yaml).
RUN groupadd --system --gid 10001 sonic \
    && useradd --system --uid 10001 --gid sonic --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin sonic
COPY --from=build /opt/sonic-gateway /opt/sonic-gateway
# Listen on every interface inside the container (the code's default is loopback only), log JSON
# lines; everything else comes from SONIC_GATEWAY_* variables or --config at run time.
ENV PATH=/opt/sonic-gateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SONIC_GATEWAY_SERVER__HOST=0.0.0.0 \
    SONIC_GATEWAY_SERVER__PORT=8080 \
    SONIC_GATEWAY_LOGGING__FORMAT=json
WORKDIR /opt/sonic-gateway
USER 10001:10001
EXPOSE 8080
# SIGTERM starts the drain: readiness turns 503, live calls get limits.drain_timeout_s to finish.
# Give the container at least that long to stop (docker stop --time, or the pod's grace period).
STOPSIGNAL SIGTERM
# Liveness only: /healthz answers 200 while the process serves, draining or not.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SONIC_GATEWAY_SERVER__PORT', '8080') + '/healthz', timeout=2)"]
# Exec form: the gateway is PID 1 and receives the stop signal itself (the kernel applies no default
# action to signals sent to PID 1; the gateway installs its own SIGTERM/SIGINT handlers).
ENTRYPOINT ["sonic-gateway", "serve"]
