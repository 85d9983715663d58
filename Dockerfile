# syntax=docker/dockerfile:1
# The region core's image: `region-core` (a city shard, `migrate`, or the
# global catalog) and nothing else. Build with scripts/build-image.sh;
# docs/deploy.md and docs/adr/0020-image-base.md say why it looks so.
#
# Stage 1 builds the release binary. Migrations (migrations/,
# migrations-global/), the e-mail templates and the .sqlx/ query data are
# compiled into it (sqlx::migrate!, include_str!, SQLX_OFFLINE from
# .cargo/config.toml), so the runtime stage copies the binary alone.

# Debian 12 (bookworm) like the runtime base, so the binary links the
# same glibc it runs on. Pin by digest in a real registry
# (rust:1.95-bookworm@sha256:…); the tag keeps this file readable.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target/ between builds (BuildKit);
# the binary is copied out of target/ in the same step, since a cache
# mount is not part of the image.
# The release profile keeps line tables for readable backtraces, which
# make the binary 112 MB (measured 2026-12-05); 87 MB of that is debug
# info. The image gets the binary without it (25 MB; function names stay,
# so backtraces still name every frame), and the debug info goes to its
# own file, linked by build id and name, for symbolising a crash's
# addresses later (the debuginfo stage below exports it).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release -p region-core --locked \
    && objcopy --only-keep-debug target/release/region-core /region-core.debug \
    && objcopy --strip-debug --add-gnu-debuglink=/region-core.debug \
        target/release/region-core /region-core

# `docker build --target debuginfo --output type=local,dest=dist .` writes
# region-core.debug next to the release: keep it with the image's tag.
FROM scratch AS debuginfo
COPY --from=build /region-core.debug /

# distroless/cc: glibc, libgcc, CA certificates and tzdata; no shell, no
# package manager. The :nonroot variant's user is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /region-core /usr/local/bin/region-core
# Numeric, so Kubernetes' runAsNonRoot can check it without /etc/passwd.
USER 65532:65532
# REGION_LISTEN's default is 127.0.0.1:8080, unreachable from outside the
# container: the image listens on every interface. The catalog
# (`region-core catalog`) reads CATALOG_LISTEN instead (set it to
# 0.0.0.0:8070).
ENV REGION_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/region-core"]
CMD ["serve"]
