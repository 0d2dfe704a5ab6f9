# The Strata image: `docker build -t strata .` builds `strata` from this source tree and
# runs it as an unprivileged user on Debian slim (docs/operations.md, "Container image").

FROM docker.io/library/rust:1-bookworm AS builder
# protoc and its standard includes, to build the etcd client's protobuf code.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The release profile keeps debug info for profiling; the image goes without it.
RUN CARGO_PROFILE_RELEASE_DEBUG=0 cargo build --release -p gateway --locked \
 && cp target/release/strata /usr/local/bin/strata

# The builder's Debian release, for the glibc the binary was linked against.
# tests/deploy/test_image.py builds this stage offline with its RUN and COPY results stood
# in for: it expects the binary, the user and the data directory where they are here.
FROM docker.io/library/debian:bookworm-slim
# CA certificates for object stores over HTTPS; a fixed uid/gid so volumes and
# Kubernetes' securityContext can name them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 strata \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/strata --no-create-home \
      --shell /usr/sbin/nologin strata \
 && install -d -o 10001 -g 10001 /var/lib/strata
COPY --from=builder /usr/local/bin/strata /usr/local/bin/strata
USER 10001:10001
WORKDIR /var/lib/strata
EXPOSE 9092 9644
# strata is PID 1 itself (exec form, no shell), so the stop signal reaches it and a
# gateway drains before it exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/strata"]
CMD ["standalone", "--data-dir", "/var/lib/strata", "--listen", "0.0.0.0:9092", "--http", "0.0.0.0:9644"]
