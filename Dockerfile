# syntax=docker/dockerfile:1
# Build stage: the custom Caddy (standard modules + ai_gateway).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/caddy ./cmd/caddy \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/fakellm ./cmd/fakellm

# Run stage: non-root, Caddyfile.example as the default config.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/caddy --create-home caddy
COPY --from=build /out/caddy /usr/bin/caddy
COPY --from=build /out/fakellm /usr/bin/fakellm
COPY Caddyfile.example /etc/caddy/Caddyfile
# A container must listen on all interfaces; declare gateway keys (or set
# require_key) before exposing it.
ENV XDG_CONFIG_HOME=/var/lib/caddy/config XDG_DATA_HOME=/var/lib/caddy/data \
    AI_GATEWAY_BIND=0.0.0.0
USER caddy
EXPOSE 8080
ENTRYPOINT ["/usr/bin/caddy"]
CMD ["run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
