// glibc malloc tuning for processes that move large gRPC messages: the C++
// SDK (Plugin::Serve) and the host library (Host::Create) call it once, so
// that neither plugins nor hosts pay page faults on every large call.
//
//   plugd::AllocatorTuning tuning = plugd::TuneAllocator(max_message_bytes);
//   PLUGD_LOG(INFO) << tuning.description;
//
// Why: glibc serves blocks of 128 KiB and more with mmap and hands freed
// memory at the top of a heap back to the kernel once more than 128 KiB is
// free there (its dynamic thresholds only grow to twice the largest block
// freed so far). A call carrying a 64 KiB-1 MiB message allocates and frees
// several blocks of its size, so every call maps fresh pages and faults
// them in: the round trip becomes page-fault bound. TuneAllocator raises
// M_MMAP_THRESHOLD to cover a message of max_message_bytes (glibc's limit on
// 64-bit is 32 MiB, DEFAULT_MMAP_THRESHOLD_MAX) and M_TRIM_THRESHOLD to twice
// that, so freed message buffers are reused from the heap.
//
// The cost: up to M_TRIM_THRESHOLD (at most 64 MiB) of freed memory may stay
// mapped per malloc arena instead of going back to the kernel — what glibc
// itself keeps once it has freed a 32 MiB block.
//
// Opt-out: PluginInfo::tune_allocator / HostOptions::tune_allocator = false.
// TuneAllocator also leaves malloc alone when the process's environment
// already tunes it (any MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_,
// MALLOC_TOP_PAD_, MALLOC_MMAP_MAX_, or a GLIBC_TUNABLES naming
// glibc.malloc.*), and when malloc is not glibc's.
#ifndef PLUGD_COMMON_ALLOCATOR_H_
#define PLUGD_COMMON_ALLOCATOR_H_

#include <cstdint>
#include <string>

namespace plugd {

// glibc's upper bound for M_MMAP_THRESHOLD on 64-bit systems
// (DEFAULT_MMAP_THRESHOLD_MAX: 4 * 1024 * 1024 * sizeof(long)).
inline constexpr int64_t kMaxMmapThresholdBytes = int64_t{32} << 20;

// What TuneAllocator did.
struct AllocatorTuning {
  // True when the thresholds were changed.
  bool applied = false;
  // The thresholds set, in bytes (0 when not applied).
  int64_t mmap_threshold_bytes = 0;
  int64_t trim_threshold_bytes = 0;
  // One line for the log: what was set, or why nothing was.
  std::string description;
};

// Raises glibc's mmap and trim thresholds for messages up to
// `max_message_bytes` (see above). Thread-safe; the last call wins. Does
// nothing when the environment already tunes malloc or malloc is not glibc's.
AllocatorTuning TuneAllocator(int64_t max_message_bytes);

}  // namespace plugd

#endif  // PLUGD_COMMON_ALLOCATOR_H_
