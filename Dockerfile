# syntax=docker/dockerfile:1
# The operator image: the release binary on distroless, run as non-root, with a
# read-only root filesystem (the binary writes nothing to disk).
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/OWNER/s3-resource-operator:TAG .
#
# The build stage runs on the builder's own platform and cross-compiles for TARGETARCH, so a
# multi-architecture build needs no emulation.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-${DEBIAN} AS build
ARG TARGETARCH
ARG BUILDARCH
WORKDIR /src
# aws-lc (rustls' crypto) is C: its build needs cmake and clang, and a C compiler and linker
# for the target (the native ones when target and builder agree).
RUN set -eux; \
    case "$TARGETARCH" in \
      amd64) target=x86_64-unknown-linux-gnu;  triple=x86-64-linux-gnu; gnu=x86_64-linux-gnu; libc=amd64 ;; \
      arm64) target=aarch64-unknown-linux-gnu; triple=aarch64-linux-gnu; gnu=aarch64-linux-gnu; libc=arm64 ;; \
      *) echo "unsupported TARGETARCH=$TARGETARCH (amd64 or arm64)" >&2; exit 1 ;; \
    esac; \
    pkgs="cmake clang"; \
    if [ "$TARGETARCH" != "$BUILDARCH" ]; then pkgs="$pkgs gcc-$triple libc6-dev-$libc-cross"; cc="$gnu-gcc"; else cc=gcc; fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends $pkgs; \
    rm -rf /var/lib/apt/lists/*; \
    rustup target add "$target"; \
    upper="$(echo "$target" | tr 'a-z-' 'A-Z_')"; \
    { echo "export CARGO_BUILD_TARGET=$target"; \
      echo "export CARGO_TARGET_${upper}_LINKER=$cc"; \
      echo "export CC_$(echo "$target" | tr '-' '_')=$cc"; } > /cargo-env
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=target-${TARGETARCH} \
    set -eux; \
    . /cargo-env; \
    cargo build --release --locked --package s3op-controller --bin s3-resource-operator; \
    install -D -m 0755 "target/$CARGO_BUILD_TARGET/release/s3-resource-operator" /out/s3-resource-operator

# glibc and CA certificates, no shell, no package manager; uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/s3-resource-operator /usr/local/bin/s3-resource-operator
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/s3-resource-operator"]
