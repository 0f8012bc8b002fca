#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "plugd/broker/proc_stat.h"

namespace plugd::broker::testing {
namespace {}  // namespace

bool ProcessGone(pid_t pid) {
  std::optional<internal::ProcStat> stat = internal::ReadProcStat(pid);
  return !stat || stat->state == 'Z' || stat->state == 'X';
}

std::vector<pid_t> ChildrenOfThisProcess() {
  std::vector<pid_t> children;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return children;
  const pid_t self = ::getpid();
  while (struct dirent* entry = ::readdir(dir)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    std::optional<internal::ProcStat> stat = internal::ReadProcStat(pid);
    if (stat && stat->ppid == self) children.push_back(pid);
  }
  ::closedir(dir);
  return children;
}

std::optional<OutputLine> WaitForLine(
    OutputCapture& output, const std::function<bool(const OutputLine&)>& match,
    absl::Duration timeout) {
  auto found = std::make_shared<absl::Notification>();
  auto line = std::make_shared<std::optional<OutputLine>>();
  int id = output.Subscribe([found, line, match](const OutputLine& l) {
    if (!found->HasBeenNotified() && match(l)) {
      *line = l;
      found->Notify();
    }
  });
  std::optional<OutputLine> result;
  for (const OutputLine& l : output.Tail()) {
    if (match(l)) result = l;
  }
  if (!result && found->WaitForNotificationWithTimeout(timeout)) {
    result = *line;
  }
  output.Unsubscribe(id);
  return result;
}

bool WaitForOutputCondition(OutputCapture& output,
                            const std::function<bool()>& condition,
                            absl::Duration timeout) {
  auto done = std::make_shared<absl::Notification>();
  int id = output.Subscribe([done, condition](const OutputLine&) {
    if (!done->HasBeenNotified() && condition()) done->Notify();
  });
  bool ok = condition() || done->WaitForNotificationWithTimeout(timeout);
  output.Unsubscribe(id);
  return ok;
}

}  // namespace plugd::broker::testing
