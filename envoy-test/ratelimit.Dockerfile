# gatehouse-ratelimit, the rate-limit service of the rate-limit filter's
# global rules (services/ratelimit), built from this repository.
# Build context: the repository root (see docker-compose.yaml); the files
# it may use are listed in ratelimit.Dockerfile.dockerignore (the same set
# as the echo image's).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p gatehouse-ratelimit --bin gatehouse-ratelimit

FROM debian:bookworm-slim
COPY --from=build /src/target/release/gatehouse-ratelimit /usr/local/bin/gatehouse-ratelimit
USER 65534:65534
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/gatehouse-ratelimit"]
