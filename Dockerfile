# syntax=docker/dockerfile:1
# One image for both services: `points` (the gRPC server; its default command) and `points-gateway` (the REST
# gateway as its own process: run it with `--entrypoint points-gateway`). Build from the repository root:
#   docker build -t points .
# Nothing is downloaded at build time beyond crates: protos compile with protox, Swagger UI and the admin app are
# embedded in the binaries.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own that is rebuilt only when a manifest, Cargo.lock or a proto changes:
# the workspace's manifests with empty targets, built once, so a change to the sources recompiles only our crates.
COPY Cargo.toml Cargo.lock build.rs ./
COPY api/Cargo.toml api/build.rs api/
COPY gateway/Cargo.toml gateway/
COPY proto proto
RUN mkdir -p src api/src gateway/src benches migrations/public migrations/tenant \
    && touch src/lib.rs api/src/lib.rs gateway/src/lib.rs \
    && for main in src/main.rs gateway/src/main.rs benches/loadgen.rs benches/reports.rs; do \
         echo 'fn main() {}' > "$main"; \
       done \
    && cargo build --release --locked --workspace --bins \
    && rm -rf src api/src gateway/src benches
# Then the sources. COPY keeps the files' times from the build context, which may be older than the stubs' builds:
# touching the crate roots makes cargo rebuild our three crates (and only them).
COPY . .
RUN touch src/lib.rs src/main.rs api/src/lib.rs gateway/src/lib.rs gateway/src/main.rs \
    && cargo build --release --locked --workspace --bins \
    && install -D -m 0755 target/release/points target/release/points-gateway -t /out

FROM debian:bookworm-slim
# A numeric user, so a runtime that refuses root (runAsNonRoot) can check it without reading /etc/passwd.
RUN groupadd --system --gid 10001 points \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin points
COPY --from=build /out/points /out/points-gateway /usr/local/bin/
ENV POINTS_LOG_FORMAT=json
USER 10001:10001
# gRPC, REST (the in-process or standalone gateway), the server's own Prometheus metrics (POINTS_METRICS_ADDR).
EXPOSE 50051 8030 9090
# The server's gRPC health (grpc.health.v1, follows the database); compose gives the gateway its own check.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["points", "healthcheck"]
ENTRYPOINT ["points"]
CMD ["serve"]
