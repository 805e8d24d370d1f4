# Reprise: build, test and benchmark. Each target installs what it needs on a fresh Debian machine.
SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps demo test docs examples bench bench-matmul compare compare-models compare-threads sweep

# OpenBLAS, zlib and Open MPI (found through pkg-config; mpirun for distributed runs) are the system
# dependencies.
deps:
	@if ! pkg-config --exists openblas zlib ompi-c 2>/dev/null || ! command -v mpirun >/dev/null; then \
	  echo "Installing libopenblas-dev, zlib1g-dev, libopenmpi-dev, openmpi-bin and pkg-config"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev zlib1g-dev libopenmpi-dev openmpi-bin pkg-config; \
	fi

# The main job: DenseNet-BC-40 (k=12, memory-efficient) on Fashion-MNIST for one epoch.
demo: deps
	@if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  echo "Installing dataset-fashion-mnist"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	fi
	swift build -c release --product reprise
	.build/release/reprise train

# The whole test suite, the tool on hostile inputs (Scripts/hostile-inputs.py), the examples for a few
# steps, then the documentation (built with warnings as errors).
# As root, the distributed tests also run two "machines" in network namespaces (iproute2).
test: deps
	@if [ "$$(id -u)" = 0 ] && ! command -v ip >/dev/null; then \
	  echo "Installing iproute2"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2; \
	fi
	swift test --disable-swift-testing
	python3 Scripts/hostile-inputs.py --binary .build/debug/reprise
	$(MAKE) examples
	$(MAKE) docs

# The examples, built in release mode (as users run them) and run for a few steps; the char-transformer
# reads the Debian package fortunes.
examples: deps
	@if [ ! -d /usr/share/games/fortunes ]; then \
	  echo "Installing fortunes"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes; \
	fi
	swift build -c release --product char-transformer
	swift build -c release --product gru-classifier
	.build/release/char-transformer --steps 2
	.build/release/gru-classifier --steps 20

# The API reference of every module and the DocC catalog with its articles (Sources/Reprise/Reprise.docc), in
# .build/plugins/Swift-DocC/outputs/*.doccarchive.
docs: deps
	swift package generate-documentation --target TensorModule --target Autograd --target NN --target Models --target Reprise --target RepriseDistributed --warnings-as-errors

# Tensor matmul against a direct cblas_sgemm call of the same size (release build, median of 11).
bench-matmul: deps
	swift build -c release --product reprise
	for size in 256 1024 2048; do .build/release/reprise bench --kernel matmul --size $$size --threads 2; done

# Training steps on random data: DenseNet-BC-100 (k=12) and SeqResNet(8,4,1), batch 64, plain and
# memory-efficient; ResNet-20 with each convolution variant, batch 128.
bench: deps
	swift build -c release --product reprise
	.build/release/reprise bench --depth 100 --batch-size 64 --steps 5
	.build/release/reprise bench --depth 100 --batch-size 64 --steps 5 --memory-efficient
	.build/release/reprise bench --model seqresnet --granularity 8 --widening 4 --batch-size 64 --steps 5
	.build/release/reprise bench --model seqresnet --granularity 8 --widening 4 --batch-size 64 --steps 5 --memory-efficient
	for conv in standard dsconv multiception mixconv; do .build/release/reprise bench --model resnet20 --conv $$conv --batch-size 128 --steps 5; done

# Reprise against PyTorch (../shared/anchors/torch_densenet.py) in the same run: DenseNet-BC-100, batch 64,
# five rounds of both back to back, plain and memory-efficient in each. PyTorch is never installed here:
# set PYTHON to an interpreter that has torch (else only Reprise runs).
compare: deps
	swift build -c release --product reprise
	python3 Scripts/compare.py --depths 100 --steps 5 --rounds 5

# The same for every other model family against the PyTorch transcriptions in Scripts/torch_models.py:
# SeqResNet(8,4,1) batch 64, ResNet-20 with each convolution variant batch 128, MobileNetV2 (standard
# and Multiception) batch 64, SE-ResNet-56 batch 128, ShakeNet-26-2x96d batch 32 (two steps: it is large);
# plain, memory-efficient, and under the checkpoint planner's plan of the smallest peak it reaches.
compare-models: deps
	swift build -c release --product reprise
	python3 Scripts/compare.py --model seqresnet --batch 64 --steps 5 --rounds 3 --modes plain,efficient,planned
	python3 Scripts/compare.py --model resnet20 --batch 128 --steps 5 --rounds 3 --modes plain,efficient,planned
	python3 Scripts/compare.py --model mobilenetv2 --convs standard,multiception --batch 64 --steps 3 --rounds 3 --modes plain,efficient,planned
	python3 Scripts/compare.py --model seresnet56 --convs standard --batch 128 --steps 3 --rounds 3 --modes plain,efficient,planned
	python3 Scripts/compare.py --model shakenet26-2x96d --convs standard --batch 32 --steps 3 --rounds 3 --modes plain,efficient,planned

# Two threads against one, in turns, Reprise beside PyTorch: ResNet-20 batch 128, the pool's own 2048 x 2048
# product (what the host gives a second core's arithmetic), DenseNet-BC-100 batch 64; three sets.
compare-threads: deps
	swift build -c release --product reprise
	python3 Scripts/compare-threads.py --sets 3

# Peak memory against depth (40 to 250), plain and memory-efficient: docs/memory-vs-depth.csv and .svg.
sweep: deps
	swift build -c release --product reprise
	python3 Scripts/compare.py --sweep --steps 2
