# The gateway and the reference upstream in one image, with the web UI built in.
#   docker build -t sse-gateway .
# Used by docker-compose.yml; see deploy/ for the configuration it runs with.

# Rust binaries. cmake: pingora's zlib-ng is built with it.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sse-gateway --bin reference-upstream

# The web UI (Node 20; see frontend-react/package.json).
FROM node:20-bookworm-slim AS ui
WORKDIR /ui
COPY frontend-react/package.json frontend-react/package-lock.json ./
RUN npm ci
COPY frontend-react/ ./
RUN npm run build

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home sse
COPY --from=build /src/target/release/sse-gateway /src/target/release/reference-upstream /usr/local/bin/
COPY --from=ui /ui/dist /srv/ui
COPY deploy/gateway.yaml /etc/sse-gateway/gateway.yaml
USER sse
EXPOSE 8080
# SIGTERM drains streams over shutdown.grace_period, then exits 0: give it that long.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["sse-gateway"]
CMD ["--config", "/etc/sse-gateway/gateway.yaml", "--log-format", "json"]
