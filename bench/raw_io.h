// Blocking whole-buffer read and write on a file descriptor, for the raw
// Unix-socket floor of the benchmarks (bench-echo-server --mode raw and its
// client in clients.cc): retried on EINTR and short transfers.
//
//   uint32_t size;
//   if (!plugd::bench::ReadFull(fd, &size, sizeof(size))) return;  // EOF
#ifndef PLUGD_BENCH_RAW_IO_H_
#define PLUGD_BENCH_RAW_IO_H_

#include <unistd.h>

#include <cerrno>
#include <cstddef>

namespace plugd::bench {

// Reads exactly `size` bytes; false on EOF or an error.
inline bool ReadFull(int fd, void* data, size_t size) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::read(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Writes exactly `size` bytes; false on an error.
inline bool WriteFull(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace plugd::bench

#endif  // PLUGD_BENCH_RAW_IO_H_
