# PlugdGo: Go code in the plugd build, GOPATH mode, Debian's Go packages only.
#
# The module proxy is not reachable from plugd's build machines, so Go code
# builds in GOPATH mode (GO111MODULE=off) against Debian's packages under
# /usr/share/gocode: grpc-go 1.33 (golang-google-grpc-dev) and
# github.com/golang/protobuf 1.3.5 (golang-goprotobuf-dev, protobuf APIv1).
# Go is required, like Python and Node: tools/setup-deps.sh installs it.
#
#   plugd_go_protos(IMPORT_DIR dir PROTOS a/v1/a.proto...)
#       Generates Go code (messages + gRPC, /usr/bin/protoc-gen-go v1.3.5 with
#       plugins=grpc) for each proto into the generated GOPATH,
#       ${PLUGD_GO_GEN_GOPATH}/src/<dir of the proto>/. The Go import path is
#       the proto's directory: plugd/v1/plugin.proto -> "plugd/v1" (package
#       plugd_v1, usually imported as plugdv1), kv/v1/kv.proto -> "kv/v1".
#       google/protobuf/*.proto map to github.com/golang/protobuf/ptypes/*.
#       Every generated file is built once by the target plugd_go_stubs.
#
#   plugd_go_binary(NAME
#                   PACKAGE import/path
#                   [GOPATH dir...]
#                   [DEPENDS file-or-target...])
#       Builds the Go main package PACKAGE into build/bin/NAME, as the target
#       NAME (part of ALL). GOPATH lists source GOPATH roots (directories
#       with a src/ folder); default: plugin-sdk/go. The build sees
#       GOPATH=<generated>:<GOPATH...>:/usr/share/gocode. It reruns when any
#       .go file under those source roots or any generated stub changes; Go's
#       own cache keeps the rebuild cheap.
#
#   plugd_go_test(NAME
#                 PACKAGES import/path...
#                 [GOPATH dir...]
#                 [ENVIRONMENT VAR=value...])
#       Registers a ctest test NAME that runs `go test -count=1 -v PACKAGES`
#       in the same GOPATH setting (the tests compile at test time).
#
# Go's build cache is ${CMAKE_BINARY_DIR}/go-cache, so the build does not
# depend on $HOME. Go builds share one Ninja job pool of size 1: each `go`
# already uses every core.

find_program(PLUGD_GO go)
if(NOT PLUGD_GO)
  message(FATAL_ERROR
    "Go (the `go` command) was not found, and plugd builds its Go SDK and "
    "Go plugins with it. Run tools/setup-deps.sh (or `make setup`), which "
    "installs Debian's golang-go and the Go gRPC packages.")
endif()
set(PLUGD_PROTOC_GEN_GO /usr/bin/protoc-gen-go CACHE FILEPATH
    "protoc-gen-go v1.3.x (Debian's protoc-gen-go-1-3): APIv1 code with plugins=grpc")
set(PLUGD_GO_SYSTEM_GOPATH /usr/share/gocode CACHE PATH
    "Where Debian's Go library packages live")
foreach(need
    ${PLUGD_PROTOC_GEN_GO}
    ${PLUGD_GO_SYSTEM_GOPATH}/src/google.golang.org/grpc/server.go
    ${PLUGD_GO_SYSTEM_GOPATH}/src/github.com/golang/protobuf/proto/lib.go)
  if(NOT EXISTS ${need})
    message(FATAL_ERROR
      "${need} is missing: the Go packages plugd builds with are not "
      "installed. Run tools/setup-deps.sh (or `make setup`); it installs "
      "golang-go golang-google-grpc-dev golang-goprotobuf-dev "
      "protoc-gen-go-1-3.")
  endif()
endforeach()

set(PLUGD_GO_GEN_GOPATH ${CMAKE_BINARY_DIR}/go)
set(PLUGD_GO_CACHE ${CMAKE_BINARY_DIR}/go-cache)
set(PLUGD_GO_DEFAULT_GOPATH ${CMAKE_SOURCE_DIR}/plugin-sdk/go)
set_property(GLOBAL APPEND PROPERTY JOB_POOLS plugd_go=1)

# The environment of every `go` command, as `cmake -E env` arguments.
# GOENV=off and GOFLAGS= keep a developer's go settings out of the build.
function(_plugd_go_env out_var)
  set(path ${PLUGD_GO_GEN_GOPATH})
  foreach(dir IN LISTS ARGN)
    string(APPEND path ":${dir}")
  endforeach()
  string(APPEND path ":${PLUGD_GO_SYSTEM_GOPATH}")
  set(${out_var}
    GOPATH=${path} GO111MODULE=off GOENV=off GOFLAGS= GOPROXY=off
    GOCACHE=${PLUGD_GO_CACHE}
    PARENT_SCOPE)
endfunction()

# Generated files (absolute paths) of every plugd_go_protos call.
set_property(GLOBAL PROPERTY PLUGD_GO_STUB_FILES "")
set_property(GLOBAL PROPERTY PLUGD_GO_STUB_PACKAGES "")

function(plugd_go_protos)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "IMPORT_DIR" "PROTOS")
  if(NOT arg_IMPORT_DIR OR NOT arg_PROTOS)
    message(FATAL_ERROR "plugd_go_protos: IMPORT_DIR and PROTOS are required")
  endif()
  # Well-known types: golang/protobuf 1.3's own packages, not the APIv2
  # import paths written in Debian's .proto files.
  set(opts plugins=grpc)
  foreach(wkt struct:struct empty:empty timestamp:timestamp
          duration:duration any:any wrappers:wrappers)
    string(REPLACE ":" ";" parts ${wkt})
    list(GET parts 0 file)
    list(GET parts 1 pkg)
    list(APPEND opts
      "Mgoogle/protobuf/${file}.proto=github.com/golang/protobuf/ptypes/${pkg}")
  endforeach()
  list(JOIN opts "," opts)
  set(src ${PLUGD_GO_GEN_GOPATH}/src)
  foreach(proto IN LISTS arg_PROTOS)
    string(REGEX REPLACE "\\.proto$" ".pb.go" out ${proto})
    get_filename_component(pkg ${proto} DIRECTORY)
    add_custom_command(
      OUTPUT ${src}/${out}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${src}
      COMMAND protobuf::protoc
        -I ${arg_IMPORT_DIR}
        --plugin=protoc-gen-go=${PLUGD_PROTOC_GEN_GO}
        --go_out=${opts}:${src}
        ${arg_IMPORT_DIR}/${proto}
      DEPENDS ${arg_IMPORT_DIR}/${proto} protobuf::protoc ${PLUGD_PROTOC_GEN_GO}
      COMMENT "Generating Go code for ${proto}"
      VERBATIM)
    set_property(GLOBAL APPEND PROPERTY PLUGD_GO_STUB_FILES ${src}/${out})
    set_property(GLOBAL APPEND PROPERTY PLUGD_GO_STUB_PACKAGES ${pkg})
  endforeach()
endfunction()

# Call once, in the directory of the plugd_go_protos calls, after them:
# the target plugd_go_stubs generates and compiles every stub package.
function(plugd_go_stubs_target)
  get_property(files GLOBAL PROPERTY PLUGD_GO_STUB_FILES)
  get_property(packages GLOBAL PROPERTY PLUGD_GO_STUB_PACKAGES)
  list(REMOVE_DUPLICATES packages)
  _plugd_go_env(env)
  set(stamp ${CMAKE_CURRENT_BINARY_DIR}/plugd_go_stubs.stamp)
  add_custom_command(
    OUTPUT ${stamp}
    COMMAND ${CMAKE_COMMAND} -E env ${env}
      ${PLUGD_GO} build ${packages}
    COMMAND ${CMAKE_COMMAND} -E touch ${stamp}
    DEPENDS ${files}
    WORKING_DIRECTORY ${PLUGD_GO_GEN_GOPATH}
    JOB_POOL plugd_go
    COMMENT "Compiling the Go stubs"
    VERBATIM)
  add_custom_target(plugd_go_stubs ALL DEPENDS ${stamp})
endfunction()

function(plugd_go_binary name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "PACKAGE" "GOPATH;DEPENDS")
  if(NOT arg_PACKAGE)
    message(FATAL_ERROR "plugd_go_binary(${name}): PACKAGE is required")
  endif()
  if(NOT arg_GOPATH)
    set(arg_GOPATH ${PLUGD_GO_DEFAULT_GOPATH})
  endif()
  _plugd_go_env(env ${arg_GOPATH})
  set(sources)
  foreach(root IN LISTS arg_GOPATH)
    file(GLOB_RECURSE found CONFIGURE_DEPENDS ${root}/src/*.go)
    list(APPEND sources ${found})
  endforeach()
  list(FILTER sources EXCLUDE REGEX "_test\\.go$")
  get_property(stubs GLOBAL PROPERTY PLUGD_GO_STUB_FILES)
  set(out ${CMAKE_RUNTIME_OUTPUT_DIRECTORY}/${name})
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E env ${env}
      ${PLUGD_GO} build -o ${out} ${arg_PACKAGE}
    DEPENDS ${sources} ${stubs} plugd_go_stubs ${arg_DEPENDS}
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}
    JOB_POOL plugd_go
    COMMENT "Building Go program ${name} (${arg_PACKAGE})"
    VERBATIM)
  add_custom_target(${name} ALL DEPENDS ${out})
endfunction()

function(plugd_go_test name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "PACKAGES;GOPATH;ENVIRONMENT")
  if(NOT arg_PACKAGES)
    message(FATAL_ERROR "plugd_go_test(${name}): PACKAGES is required")
  endif()
  if(NOT arg_GOPATH)
    set(arg_GOPATH ${PLUGD_GO_DEFAULT_GOPATH})
  endif()
  _plugd_go_env(env ${arg_GOPATH})
  add_test(NAME ${name}
    COMMAND ${CMAKE_COMMAND} -E env ${env} ${arg_ENVIRONMENT}
      ${PLUGD_GO} test -count=1 -v ${arg_PACKAGES}
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
endfunction()
