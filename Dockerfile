# alertmanager-sipgate container image.
#
#   docker build --build-arg REVISION="$(git describe --always --dirty --abbrev=12)" -t alertmanager-sipgate .
#   docker run -p 9716:9716 --read-only --user "$(id -u):$(id -g)" -e SIPGATE_TOKEN_ID -e SIPGATE_TOKEN \
#     -v "$PWD/examples:/etc/alertmanager-sipgate:ro" alertmanager-sipgate
#
# REVISION is the git revision that `--version` and the build_info metric show: the build
# context has no .git, so without it they say "unknown".
#
# Mount the config file at /etc/alertmanager-sipgate/config.yml; relative paths in it
# (templates.dir, *_file) resolve against that folder, so mount its templates and secret files
# (the example's sms-password, made by the README's quick start) beside it. The image runs as
# user 65532; `--user` runs it as the owner of the files instead, so that a secret readable by
# its owner only stays so. Without Sipgate credentials the service runs in dry-run mode.

# The builder and the runtime base are build arguments so that a machine without access to an
# image registry can pass stand-ins (examples/image-check.sh does); the defaults are the official
# images.
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS builder
WORKDIR /build

# Dependencies in their own layer, rebuilt only when the manifest or lock file change.
# Cargo refuses a manifest whose declared targets have no source file, so the bench and
# example get stubs too; they are never built here.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches examples \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/pipeline.rs \
 && echo 'fn main() {}' > examples/fake_sipgate.rs \
 && echo 'fn main() {}' > benches/bare_endpoint.rs \
 && echo 'fn main() {}' > benches/send.rs \
 && echo 'fn main() {}' > benches/calendar.rs \
 && cargo build --release --locked \
 && rm -rf src

# Built-in templates are compiled into the binary; build.rs takes the revision from REVISION.
COPY templates ./templates
COPY build.rs ./
COPY src ./src

# Declared here so that a new revision does not invalidate the dependency layer.
ARG REVISION=unknown
# COPY may keep mtimes older than the stub build; touching makes cargo rebuild the crate.
RUN touch src/lib.rs src/main.rs \
 && ALERTMANAGER_SIPGATE_REVISION="${REVISION}" cargo build --release --locked \
 && install -D -m 0755 target/release/alertmanager-sipgate /out/alertmanager-sipgate

# glibc, libgcc and CA certificates (for the Sipgate API over TLS), no shell.
FROM ${BASE_IMAGE}

ARG BASE_IMAGE
ARG REVISION=unknown
LABEL org.opencontainers.image.title="alertmanager-sipgate" \
      org.opencontainers.image.description="Prometheus Alertmanager webhook receiver that sends SMS through the Sipgate REST API" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

COPY --from=builder /out/alertmanager-sipgate /usr/local/bin/alertmanager-sipgate

# The distroless `nonroot` user, numeric so that Kubernetes can verify runAsNonRoot.
USER 65532:65532
EXPOSE 9716

# No shell or curl in the image: the binary probes its own /-/healthy endpoint.
# With another --web.listen-address, override it in exec form (there is no shell),
# e.g. compose `test: ["CMD", "/usr/local/bin/alertmanager-sipgate", "healthcheck", "--url", URL]`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/alertmanager-sipgate", "healthcheck"]

# Without flags the service reads /etc/alertmanager-sipgate/config.yml, its default.
ENTRYPOINT ["/usr/local/bin/alertmanager-sipgate"]
