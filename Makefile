# plugd — the two commands:
#   make demo   install what is missing, build, run the demo
#   make test   install what is missing, build, run the whole test suite
# Other targets: make setup | build | clean
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all setup configure build demo test clean

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

clean:
	rm -rf $(BUILD_DIR)
