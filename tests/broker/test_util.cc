#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"

namespace plugd::broker::testing {
namespace {

// Reads state and ppid from /proc/<pid>/stat.
bool ReadStat(pid_t pid, char* state, pid_t* ppid) {
  std::string path = absl::StrCat("/proc/", pid, "/stat");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[512];
  ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return false;
  absl::string_view text(buf, static_cast<size_t>(n));
  size_t close = text.rfind(')');
  if (close == absl::string_view::npos) return false;
  std::vector<absl::string_view> fields =
      absl::StrSplit(text.substr(close + 1), ' ', absl::SkipEmpty());
  if (fields.size() < 2) return false;
  *state = fields[0][0];
  int value = 0;
  if (!absl::SimpleAtoi(fields[1], &value)) return false;
  *ppid = value;
  return true;
}

}  // namespace

bool ProcessGone(pid_t pid) {
  char state = 0;
  pid_t ppid = 0;
  if (!ReadStat(pid, &state, &ppid)) return true;
  return state == 'Z' || state == 'X';
}

std::vector<pid_t> ChildrenOfThisProcess() {
  std::vector<pid_t> children;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return children;
  const pid_t self = ::getpid();
  while (struct dirent* entry = ::readdir(dir)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    char state = 0;
    pid_t ppid = 0;
    if (ReadStat(pid, &state, &ppid) && ppid == self) children.push_back(pid);
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
