# The echo upstream of the end-to-end tests and `make run` (the `echo` binary
# of the gatehouse-e2e crate: `echo NAME ADDR:PORT`), built from this
# repository. Also carries openssl, for the one-shot `certs` service.
# Build context: the repository root (see docker-compose.yaml); the files
# it may use are listed in echo.Dockerfile.dockerignore.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p gatehouse-e2e --bin echo

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/echo /usr/local/bin/gatehouse-echo
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/gatehouse-echo"]
