# syntax=docker/dockerfile:1
# One image for every PAL process: the API server, the trainer (torchrun) and the `pal` CLI.
# Stage "deps" installs the Python dependencies into a virtualenv (cached on pyproject.toml alone);
# stage "wheel" builds PAL's wheel (migrations, templates, static files and demo data inside it);
# stage "runtime" copies that virtualenv, installs the wheel into it (no source folders), and runs as an
# unprivileged user.
#
#   docker build -t pal .
#   docker build --build-arg TORCH_INDEX_URL=<PyTorch CPU wheel index> -t pal:cpu .   # no CUDA libraries
#
# The base image is pinned to a patch release; pin it by digest too (python:3.11.11-slim-bookworm@sha256:...)
# where builds must be reproducible bit for bit.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
COPY pyproject.toml ./
# The runtime dependencies exactly as pyproject.toml lists them (PAL itself comes as a wheel, below).
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt
ARG TORCH_INDEX_URL=""
RUN pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -r requirements.txt

FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY pyproject.toml setup.py README.md ./
COPY pal ./pal
COPY server ./server
COPY trainer ./trainer
COPY bench ./bench
COPY migrations ./migrations
COPY webui ./webui
COPY demo ./demo
RUN pip wheel --no-deps -w /dist .

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PAL_DATA_DIR=/var/lib/pal
RUN groupadd --system --gid 10001 pal \
    && useradd --system --uid 10001 --gid pal --home-dir /var/lib/pal --no-create-home --shell /usr/sbin/nologin pal \
    && mkdir -p /var/lib/pal/trainer \
    && chown -R pal:pal /var/lib/pal
COPY --from=deps /opt/venv /opt/venv
COPY --from=wheel /dist /tmp/dist
# An ordinary, non-editable install: `pal` on the PATH, migrations and web UI inside the package.
RUN pip install --no-deps --no-cache-dir /tmp/dist/*.whl && rm -rf /tmp/dist
WORKDIR /var/lib/pal
USER pal
EXPOSE 8000
VOLUME ["/var/lib/pal"]
CMD ["pal", "serve", "--host", "0.0.0.0", "--port", "8000"]
