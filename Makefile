# racefree - common paths. CMake does the building; this file only wraps it.
#   make run        racefreed on 127.0.0.1:3000 with the embedded SQLite store
#   make test       every test: debug, ASan+UBSan and TSan builds, fuzzers, lint
#   make bench      benchmarks, results to docs/benchmarks.md
#   make soak       mixed traffic with restarts for SOAK_SECONDS (1800), not in CI
#   make sanitize   only the ASan+UBSan and TSan runs
#   make install PREFIX=/usr/local
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local
FUZZ_SECONDS ?= 20
ARGS ?=

.PHONY: all deps build release run test test-debug test-asan test-tsan sanitize \
        fuzz lint format bench soak install clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@echo "building the debug tree (output in build/debug.log)"
	@bash scripts/quiet.sh build/debug.log sh -c \
	  'cmake --preset debug && cmake --build --preset debug -j $(JOBS)'

release: deps
	@echo "building the release tree (output in build/release.log)"
	@bash scripts/quiet.sh build/release.log sh -c \
	  'cmake --preset release && cmake --build --preset release -j $(JOBS)'

run: release
	@bash scripts/run.sh $(ARGS)

test-debug: build
	@ctest --preset debug -j $(JOBS)

test-asan: deps
	@echo "building the asan tree (output in build/asan.log)"
	@bash scripts/quiet.sh build/asan.log sh -c \
	  'cmake --preset asan && cmake --build --preset asan -j $(JOBS)'
	@ctest --preset asan -j $(JOBS)

test-tsan: deps
	@echo "building the tsan tree (output in build/tsan.log)"
	@bash scripts/quiet.sh build/tsan.log sh -c \
	  'cmake --preset tsan && cmake --build --preset tsan -j $(JOBS)'
	@ctest --preset tsan -j $(JOBS)

sanitize: test-asan test-tsan

fuzz: deps
	@echo "building the fuzz targets (output in build/fuzz.log)"
	@bash scripts/quiet.sh build/fuzz.log sh -c 'cmake --preset fuzz && \
	  cmake --build --preset fuzz -j $(JOBS) --target \
	  $$(cmake --build build/fuzz --target help | sed -n "s/^\.\.\. \(fuzz_[a-z_0-9]*\).*/\1/p")'
	@bash scripts/fuzz.sh build/fuzz $(FUZZ_SECONDS)

lint: build
	@bash scripts/lint.sh

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

test: test-debug test-asan test-tsan fuzz lint
	@echo "make test: all suites passed"

bench: release
	@bash bench/run.sh

soak: release
	@bash bench/soak.sh

install: release
	@bash scripts/quiet.sh build/install.log cmake --install build/release --prefix $(PREFIX)
	@bash scripts/post-install.sh $(PREFIX)

clean:
	rm -rf build
