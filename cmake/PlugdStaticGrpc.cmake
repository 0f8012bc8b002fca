# PlugdStaticGrpc: link gRPC, Protobuf and Abseil statically into plugd's
# executables (option PLUGD_STATIC_GRPC, default ON since the whole suite
# passed with it; -DPLUGD_STATIC_GRPC=OFF links them shared, for faster
# links while developing; see docs/performance-notes.md).
#
# A gRPC C++ program linked against Debian's shared libraries loads about 90
# of them (libgrpc, libgrpc++, libprotobuf, ~70 libabsl_*, re2, upb, c-ares,
# address_sorting, gpr) and spends most of its exec-to-ready time in the
# dynamic loader's symbol lookups and relocations. Debian ships the static
# archives too (libgrpc-dev, libgrpc++-dev, libprotobuf-dev, libabsl-dev,
# libre2-dev, libc-ares-dev), so plugd points the imported targets at them:
# every executable of this build (plugins, hosts, the daemon, plugctl, the
# tests) then links the code it uses into itself. Measured figures are in
# docs/performance-notes.md.
#
# OpenSSL, zlib and yaml-cpp are switched the same way, Boost.Filesystem is
# found static (Boost_USE_STATIC_LIBS, top-level CMakeLists.txt), and then
# libstdc++ and libgcc are linked statically too: glibc, libm and the loader
# are all that stays shared. A C++ shared library left on a link line would
# bring a second libstdc++ into the process, so configuring fails if one
# does. plugd's own libraries are static archives either way; an
# out-of-tree build with find_package(plugd) links whatever gRPC its own
# project chooses.
#
#   plugd_static_grpc()   call once, after the find_package calls, from the
#                         top-level CMakeLists.txt.

option(PLUGD_STATIC_GRPC
  "Link gRPC, Protobuf and Abseil statically into plugd's executables (faster plugin start)"
  ON)

# The static archive beside a shared library path, or "".
function(_plugd_static_sibling out_var path)
  set(${out_var} "" PARENT_SCOPE)
  if(path MATCHES "^(.*/lib[^/]+)\\.so(\\.[0-9.]+)?$")
    set(candidate "${CMAKE_MATCH_1}.a")
    if(EXISTS "${candidate}")
      set(${out_var} "${candidate}" PARENT_SCOPE)
    endif()
  endif()
endfunction()

function(plugd_static_grpc)
  if(NOT PLUGD_STATIC_GRPC)
    message(STATUS "PLUGD_STATIC_GRPC=OFF: linking gRPC, Protobuf and Abseil shared")
    return()
  endif()
  get_property(imported DIRECTORY ${CMAKE_SOURCE_DIR} PROPERTY IMPORTED_TARGETS)
  set(switched 0)
  set(missing "")
  foreach(target IN LISTS imported)
    if(NOT target MATCHES "^(gRPC|absl|protobuf|c-ares|OpenSSL|ZLIB)::" AND
       NOT target STREQUAL "yaml-cpp")
      continue()
    endif()
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "INTERFACE_LIBRARY" OR type STREQUAL "EXECUTABLE")
      continue()
    endif()
    if(target MATCHES "^protobuf::(libprotoc|protoc)$")
      continue()
    endif()
    foreach(suffix "" _NONE _RELEASE _RELWITHDEBINFO _DEBUG _MINSIZEREL)
      get_target_property(location ${target} IMPORTED_LOCATION${suffix})
      if(NOT location)
        continue()
      endif()
      _plugd_static_sibling(archive "${location}")
      if(archive)
        set_target_properties(${target} PROPERTIES
          IMPORTED_LOCATION${suffix} "${archive}"
          IMPORTED_SONAME${suffix} "")
        math(EXPR switched "${switched} + 1")
      elseif(location MATCHES "\\.so")
        list(APPEND missing "${target} (${location})")
      endif()
    endforeach()
  endforeach()
  # Debian's Findre2 links "-lre2", which picks the shared library.
  if(TARGET re2::re2)
    find_library(PLUGD_RE2_STATIC NAMES libre2.a)
    if(PLUGD_RE2_STATIC)
      set_target_properties(re2::re2 PROPERTIES
        INTERFACE_LINK_LIBRARIES "${PLUGD_RE2_STATIC}")
    else()
      list(APPEND missing "re2::re2 (libre2.a)")
    endif()
  endif()
  # libcrypto.a needs what libcrypto.so brings along itself.
  if(TARGET OpenSSL::Crypto)
    set_property(TARGET OpenSSL::Crypto APPEND PROPERTY
      INTERFACE_LINK_LIBRARIES ${CMAKE_DL_LIBS} Threads::Threads)
  endif()
  # With every C++ library static, libstdc++ and libgcc can be too: no C++
  # shared object is left to share them with. Boost.Filesystem must have
  # been found static as well.
  if(TARGET Boost::filesystem)
    get_target_property(boost_fs_type Boost::filesystem TYPE)
    if(NOT boost_fs_type STREQUAL "STATIC_LIBRARY")
      list(APPEND missing "Boost::filesystem (${boost_fs_type})")
    endif()
  endif()
  add_link_options(-static-libstdc++ -static-libgcc)
  if(missing)
    message(FATAL_ERROR
      "PLUGD_STATIC_GRPC=ON but these libraries have no static archive: "
      "${missing}. Install the -dev packages that ship them (tools/setup-deps.sh), "
      "or configure with -DPLUGD_STATIC_GRPC=OFF.")
  endif()
  message(STATUS "PLUGD_STATIC_GRPC=ON: ${switched} gRPC/Protobuf/Abseil/OpenSSL/zlib/yaml-cpp targets and the C++ runtime linked statically")
endfunction()

# Plugin executables (and the bare gRPC servers the benchmarks compare them
# with) and plugctl are linked as position-dependent executables: with no
# relocations to apply and direct calls instead of GOT indirections, a plugin
# reaches its handshake about 5 ms (a third) sooner on the project's 2-vCPU
# VMs, and `plugctl list` takes ~7.6 ms instead of ~10.5 ms
# (docs/performance-notes.md §2). Go builds its binaries (go-plugin plugins
# included) the same way by default. The broker and hosts stay PIE: they are
# long-lived, start once, and the broker may run as root.
# -DPLUGD_PLUGIN_PIE=ON keeps plugins and plugctl PIE too.
option(PLUGD_PLUGIN_PIE "Link plugin executables and plugctl as PIE (slower start)" OFF)

#   plugd_quick_start_executable(TARGET)   call on each plugin executable
#                                          and short-lived CLI.
function(plugd_quick_start_executable target)
  if(PLUGD_PLUGIN_PIE)
    return()
  endif()
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE OFF)
  target_compile_options(${target} PRIVATE -fno-pie)
  target_link_options(${target} PRIVATE -no-pie)
endfunction()
