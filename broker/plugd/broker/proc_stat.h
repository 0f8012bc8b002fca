// Internal: reading a process's state, parent and process group from
// /proc/<pid>/stat. Used by the process-group cleanup and by tests that
// check for leftover processes.
#ifndef PLUGD_BROKER_PROC_STAT_H_
#define PLUGD_BROKER_PROC_STAT_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace plugd::broker::internal {

struct ProcStat {
  char state = 0;  // 'R', 'S', 'Z' (zombie), ...
  pid_t ppid = 0;
  pid_t pgrp = 0;
};

// Empty when the process is gone or its stat cannot be read.
std::optional<ProcStat> ReadProcStat(pid_t pid);

// The whole of /proc/<pid>/<name> ("stat", "cmdline", "environ"); empty
// when the process is gone or the file cannot be read. Plain read(2): a
// process that exits between the open and the read makes read fail with
// ESRCH, which std::filebuf reports by throwing from underflow, past an
// istreambuf_iterator's reader.
std::optional<std::string> ReadProcFile(pid_t pid, absl::string_view name);

// The whole file at `path`, with ReadFd; empty when it cannot be opened or
// read.
std::optional<std::string> ReadPath(const std::string& path);

// What is left to read of `fd`, with read(2); empty on a read error (ESRCH
// from a /proc file of a process that has exited since the open). Does not
// close `fd`.
std::optional<std::string> ReadFd(int fd);

}  // namespace plugd::broker::internal

#endif  // PLUGD_BROKER_PROC_STAT_H_
