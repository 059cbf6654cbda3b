# syntax=docker/dockerfile:1
# falbridge's container image: `make image` (docker build --build-arg
# VERSION=… -t falbridge:… .). Static binary on distroless, non-root.

# The builder runs on the build machine's platform and cross-compiles, so
# `docker buildx build --platform linux/amd64,linux/arm64` needs no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X github.com/falbridge/falbridge/internal/version.Version=${VERSION}" \
    -o /out/falbridge ./cmd/falbridge

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/falbridge /falbridge
# uid/gid 65532, as deploy/base runs it.
USER nonroot:nonroot
# 8080: webhook.listen (POST /fal/webhook); 9090: admin.listen (/healthz,
# /readyz, /metrics).
EXPOSE 8080 9090
ENTRYPOINT ["/falbridge", "serve"]
