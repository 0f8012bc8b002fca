# plugd — the two commands:
#   make demo   install what is missing, build, run the demo
#   make test   install what is missing, build, run the whole test suite
# Other targets: make setup | build | fuzz | soak | bench | clean
#   make bench   the benchmark table (docs/benchmarks.md); BENCH_QUICK=1 for a smoke
#   make fuzz FUZZ_SECONDS=600 TARGET=all   long libFuzzer runs (docs/fuzzing.md)
#   make soak SOAK_FLAGS="--fault_duration=10m"  the broker under faults
#                                           (docs/reliability.md; not in make test)
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 600
TARGET ?= all
CMAKE_FLAGS ?=
SOAK_FLAGS ?=

.PHONY: all setup configure build demo test fuzz soak bench clean

all: build

setup:
	@tools/setup-deps.sh

configure: setup
	@cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	@tools/demo.sh $(BUILD_DIR)

test: build
	@tools/run-tests.sh $(BUILD_DIR)

fuzz: build
	@tools/fuzz.sh $(BUILD_DIR)/fuzz-clang/bin $(BUILD_DIR)/fuzz-work $(TARGET) $(FUZZ_SECONDS)

soak: build
	@$(BUILD_DIR)/bin/plugd-soak $(SOAK_FLAGS)

bench: build
	@$(BUILD_DIR)/bin/plugd-bench $(BENCH_FLAGS)

clean:
	rm -rf $(BUILD_DIR)
