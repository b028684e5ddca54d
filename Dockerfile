# SPDX-License-Identifier: GPL-2.0-only
# dbwarden's container image: the binary built from source on Debian 12
# exactly as `make` builds it on a host (the same packages as the build
# group of scripts/install-deps), then the binary alone on debian:12-slim
# with the libraries it links.
#
#   docker build -t dbwarden:0.1.0 .
#
# The BPF programs are CO-RE: vmlinux.h is generated from the build
# machine's kernel BTF (/sys/kernel/btf/vmlinux, visible in build
# containers), and libbpf relocates the objects against each node's own BTF
# when the agent loads them.
FROM debian:12 AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	make gcc clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config \
	libssl-dev librdkafka-dev libpg-query-dev libyaml-dev libjansson-dev \
	libhyperscan-dev libpq-dev libprotobuf-c-dev libcapstone-dev \
	libcurl4-openssl-dev \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY include include
COPY bpf bpf
COPY userspace userspace
RUN make -j"$(nproc)" all && strip --strip-debug .output/dbwarden

FROM debian:12-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	libbpf1 libelf1 zlib1g libjansson4 libyaml-0-2 libpg-query1504.0 \
	libcurl4 libssl3 librdkafka1 libhyperscan5 libpq5 libprotobuf-c1 libcapstone4 \
	ca-certificates \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /src/.output/dbwarden /usr/local/bin/dbwarden
COPY README.md /usr/local/share/doc/dbwarden/README.md
COPY deploy/kubernetes/configmap.yaml /usr/local/share/doc/dbwarden/examples/
ENTRYPOINT ["/usr/local/bin/dbwarden"]
CMD ["run"]
