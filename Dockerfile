# modelserve container image: multi-stage, non-root, the model store as a volume.
#
# The install and start steps call scripts/bootstrap, the same script `make run`, `make test`
# and .ci/run use, so every CI run exercises them. (No container engine exists on the machines
# this project is developed on: the image itself has not been built here.)
#
#   docker build -t modelserve .
#   docker run -p 8000:8000 -v "$PWD/models:/models" modelserve
#
# An empty /models volume gets the default model trained at first start (--train-if-empty).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md LICENSE ./
COPY scripts ./scripts
COPY src ./src
# Add EXTRAS=ray to the build args for `modelserve serve --engine ray`.
ARG EXTRAS=""
RUN VENV=/app/.venv scripts/bootstrap install ${EXTRAS}

FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 --user-group modelserve \
    && mkdir /models && chown modelserve:modelserve /models
WORKDIR /app
COPY --from=build /app /app
ENV VENV=/app/.venv \
    MODELSERVE_HOST=0.0.0.0 \
    MODELSERVE_PORT=8000 \
    MODELSERVE_STORE=/models \
    MODELSERVE_LOG_FORMAT=json
VOLUME ["/models"]
USER modelserve
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/scripts/bootstrap", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/scripts/bootstrap", "serve"]
