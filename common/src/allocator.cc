#include "plugd/common/allocator.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace plugd {
namespace {

// The environment variables through which a user tunes glibc malloc.
constexpr const char* kMallocEnv[] = {
    "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX"};

// The variable that already tunes malloc, or nullptr.
const char* UserTuning() {
  for (const char* name : kMallocEnv) {
    if (std::getenv(name) != nullptr) return name;
  }
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && absl::StrContains(tunables, "glibc.malloc.")) {
    return "GLIBC_TUNABLES";
  }
  return nullptr;
}

}  // namespace

AllocatorTuning TuneAllocator(int64_t max_message_bytes) {
  AllocatorTuning out;
#if defined(__GLIBC__)
  if (const char* name = UserTuning(); name != nullptr) {
    out.description = absl::StrCat("malloc left as configured by ", name);
    return out;
  }
  // A message is held in a block of about its own size; 64 KiB spare covers
  // the framing and protobuf's rounding. glibc refuses larger values.
  int64_t mmap_threshold = max_message_bytes + (int64_t{64} << 10);
  if (mmap_threshold > kMaxMmapThresholdBytes) {
    mmap_threshold = kMaxMmapThresholdBytes;
  }
  const int64_t trim_threshold = 2 * mmap_threshold;
  // Trim first: setting either fixes both (glibc stops adapting them).
  if (mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold)) != 1 ||
      mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold)) != 1) {
    out.description = absl::StrCat(
        "mallopt refused M_MMAP_THRESHOLD=", mmap_threshold,
        " / M_TRIM_THRESHOLD=", trim_threshold, "; malloc left as it was");
    return out;
  }
  out.applied = true;
  out.mmap_threshold_bytes = mmap_threshold;
  out.trim_threshold_bytes = trim_threshold;
  out.description =
      absl::StrCat("malloc tuned for messages up to ", max_message_bytes,
                   " bytes: M_MMAP_THRESHOLD=", mmap_threshold,
                   " M_TRIM_THRESHOLD=", trim_threshold);
#else
  out.description = "malloc is not glibc's; left as it is";
#endif
  return out;
}

}  // namespace plugd
