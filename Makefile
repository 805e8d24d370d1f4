# Reprise: build, test and benchmark. Each target installs what it needs on a fresh Debian machine.
SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps test bench-matmul

# OpenBLAS (found through pkg-config) is the one system dependency.
deps:
	@if ! pkg-config --exists openblas 2>/dev/null; then \
	  echo "Installing libopenblas-dev and pkg-config"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev pkg-config; \
	fi

# The whole test suite.
test: deps
	swift test --disable-swift-testing

# Tensor matmul against a direct cblas_sgemm call of the same size (release build, median of 11).
bench-matmul: deps
	swift build -c release --product reprise
	for size in 256 1024 2048; do .build/release/reprise bench --kernel matmul --size $$size --threads 2; done
