#!/usr/bin/env bash
# Installs the Debian packages plugd needs to build and test, if missing.
# Safe to run again: it installs only what is not there. Runs as root (or
# through sudo when available); non-interactive, so it works in CI.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  # gRPC C++, protobuf, Abseil
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev
  protobuf-compiler libabsl-dev grpc-proto
  # Boost 1.81: Process v2 (header-only) + filesystem. The 1.74 -dev
  # packages conflict with these.
  libboost1.81-dev libboost-filesystem1.81-dev
  # Config files, tests, benchmarks
  libyaml-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  # plugd-bench's instructions-per-call scenario (callgrind)
  valgrind
  # SHA-256 of pinned plugin executables (OpenSSL's libcrypto EVP); its
  # libssl.a/libcrypto.a and zlib's libz.a are what gRPC links statically
  # (cmake/PlugdStaticGrpc.cmake)
  libssl-dev zlib1g-dev
  clang-format
  # Fuzz targets (fuzz/): clang with libFuzzer and the sanitizer runtimes
  clang libclang-rt-14-dev
  # Python plugin SDK: Debian's /usr/bin/python3 with gRPC and protobuf
  python3 python3-grpcio python3-protobuf
  # Go plugin SDK, GOPATH mode: Go 1.19, grpc-go, golang/protobuf 1.3
  # (APIv1) and its protoc-gen-go, HashiCorp go-plugin
  golang-go golang-google-grpc-dev golang-goprotobuf-dev protoc-gen-go-1-3
  golang-github-hashicorp-go-plugin-dev
)
# Node.js plugin SDK: node and npm, from Debian unless some node is already
# installed (e.g. NodeSource's nodejs, which bundles npm and conflicts with
# Debian's npm package).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

install_node_modules() {
  # The Node SDK's npm packages (@grpc/grpc-js, @grpc/proto-loader), exactly
  # as locked in package-lock.json; reinstalled only when the lockfile changed.
  local dir=plugin-sdk/node
  cd "$(dirname "$0")/.."
  if [ -f "$dir/package-lock.json" ] && \
     ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.package-lock.json.installed"; then
    echo "setup: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) &&
      cp "$dir/package-lock.json" "$dir/node_modules/.package-lock.json.installed"
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  install_node_modules
  exit 0
fi

echo "setup: installing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "setup: these packages are missing and I am not root: ${missing[*]}" >&2
    echo "setup: install them with: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
install_node_modules
