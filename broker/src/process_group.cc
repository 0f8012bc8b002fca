#include "process_group.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "plugd/broker/launcher.h"
#include "plugd/broker/proc_stat.h"

namespace plugd::broker {
namespace internal {
namespace {

// Rounds of scan -> SIGKILL -> wait before giving up (a member may fork
// between the scan and the kill; the kill reaches the fork too, but it is
// confirmed by the next scan).
constexpr int kMaxRounds = 3;

std::string PidList(const std::vector<pid_t>& pids) {
  return absl::StrJoin(pids, ", ");
}

absl::Status Survivors(pid_t pgid, const std::vector<pid_t>& pids) {
  return absl::DeadlineExceededError(
      absl::StrCat("process group ", pgid, ": processes ", PidList(pids),
                   " survived SIGKILL (uninterruptible sleep?)"));
}

// One syscall for the common case, a plugin that left nothing behind:
// kill(-pgid, 0) fails with ESRCH once no process (zombies included) is in
// the group. Scanning /proc instead takes ~1 ms with a few hundred
// processes, and a plugin's exit event waits for it. False means "maybe
// not": members, zombies, or no permission to ask (EPERM); ListProcessGroup
// then scans.
bool GroupIsEmpty(pid_t pgid) {
  return ::kill(-pgid, 0) != 0 && errno == ESRCH;
}

class GroupKiller : public std::enable_shared_from_this<GroupKiller> {
 public:
  GroupKiller(boost::asio::io_context& context, pid_t pgid,
              absl::Duration timeout, std::function<void(absl::Status)> done)
      : context_(context),
        pgid_(pgid),
        deadline_(absl::Now() + timeout),
        done_(std::move(done)),
        timer_(context) {}

  void Round() {
    std::vector<pid_t> members = ListProcessGroup(pgid_);
    if (members.empty()) return Finish(absl::OkStatus());
    if (round_ >= kMaxRounds || absl::Now() >= deadline_) {
      return Finish(Survivors(pgid_, members));
    }
    ++round_;
    fds_.clear();
    for (pid_t pid : members) {
      int fd = PidfdOpen(pid);
      if (fd < 0) continue;  // already gone
      fds_.push_back(std::make_unique<boost::asio::posix::stream_descriptor>(
          context_, fd));
    }
    ::kill(-pgid_, SIGKILL);
    pending_ = fds_.size();
    round_open_ = true;
    auto self = shared_from_this();
    const int round = round_;
    if (pending_ == 0) {
      boost::asio::post(context_, [self, round] { self->EndRound(round); });
      return;
    }
    for (size_t i = 0; i < fds_.size(); ++i) WaitForExit(round, i);
    timer_.expires_after(absl::ToChronoNanoseconds(
        std::max(deadline_ - absl::Now(), absl::ZeroDuration())));
    timer_.async_wait([self, round](const boost::system::error_code& ec) {
      if (!ec) self->EndRound(round);
    });
  }

 private:
  // Waits until member `i`'s pidfd is readable (it exited). A readiness from
  // the reactor is only a hint: Asio can deliver one left over from an
  // earlier descriptor that had the same reactor state (see the launcher's
  // OnExitFdReady), so it is confirmed with a zero-timeout poll() of the
  // pidfd, and the wait re-armed if the member still runs.
  void WaitForExit(int round, size_t i) {
    auto self = shared_from_this();
    fds_[i]->async_wait(
        boost::asio::posix::descriptor_base::wait_read,
        [self, round, i](const boost::system::error_code& ec) {
          if (ec || round != self->round_ || !self->round_open_) return;
          struct pollfd p = {self->fds_[i]->native_handle(), POLLIN, 0};
          int n;
          do {
            n = ::poll(&p, 1, 0);
          } while (n < 0 && errno == EINTR);
          if (n == 0) return self->WaitForExit(round, i);  // still running
          if (--self->pending_ == 0) self->EndRound(round);
        });
  }

  void EndRound(int round) {
    if (round != round_ || !round_open_) return;
    round_open_ = false;
    timer_.cancel();
    fds_.clear();
    Round();
  }

  void Finish(absl::Status status) {
    timer_.cancel();
    fds_.clear();
    if (done_) std::exchange(done_, nullptr)(std::move(status));
  }

  boost::asio::io_context& context_;
  const pid_t pgid_;
  const absl::Time deadline_;
  std::function<void(absl::Status)> done_;
  boost::asio::steady_timer timer_;
  std::vector<std::unique_ptr<boost::asio::posix::stream_descriptor>> fds_;
  size_t pending_ = 0;
  int round_ = 0;
  bool round_open_ = false;
};

}  // namespace

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  std::string path = absl::StrCat("/proc/", pid, "/stat");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[512];
  ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  absl::string_view text(buf, static_cast<size_t>(n));
  // "pid (comm) S ppid pgrp ...": comm may hold spaces and ')'.
  size_t close = text.rfind(')');
  if (close == absl::string_view::npos) return std::nullopt;
  std::vector<absl::string_view> fields =
      absl::StrSplit(text.substr(close + 1), ' ', absl::SkipEmpty());
  if (fields.size() < 3 || fields[0].empty()) return std::nullopt;
  ProcStat stat;
  stat.state = fields[0][0];
  int ppid = 0, pgrp = 0;
  if (!absl::SimpleAtoi(fields[1], &ppid) ||
      !absl::SimpleAtoi(fields[2], &pgrp)) {
    return std::nullopt;
  }
  stat.ppid = ppid;
  stat.pgrp = pgrp;
  return stat;
}

std::optional<std::string> ReadFd(int fd) {
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) return text;
    text.append(buf, static_cast<size_t>(n));
  }
}

std::optional<std::string> ReadPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::optional<std::string> text = ReadFd(fd);
  ::close(fd);
  return text;
}

std::optional<std::string> ReadProcFile(pid_t pid, absl::string_view name) {
  return ReadPath(absl::StrCat("/proc/", pid, "/", name));
}

std::vector<pid_t> ListProcessGroup(pid_t pgid) {
  std::vector<pid_t> members;
  if (GroupIsEmpty(pgid)) return members;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return members;
  while (struct dirent* entry = ::readdir(dir)) {
    absl::string_view name = entry->d_name;
    int pid = 0;
    if (name.empty() || name[0] < '1' || name[0] > '9' ||
        !absl::SimpleAtoi(name, &pid)) {
      continue;
    }
    std::optional<ProcStat> stat = ReadProcStat(pid);
    if (!stat || stat->pgrp != pgid) continue;
    if (stat->state == 'Z' || stat->state == 'X' || stat->state == 'x') {
      continue;  // dead
    }
    members.push_back(pid);
  }
  ::closedir(dir);
  return members;
}

int PidfdOpen(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

void AsyncKillProcessGroup(boost::asio::io_context& context, pid_t pgid,
                           absl::Duration timeout,
                           std::function<void(absl::Status)> done) {
  if (pgid <= 1) {
    done(absl::InvalidArgumentError(
        absl::StrCat("refusing to kill process group ", pgid)));
    return;
  }
  std::make_shared<GroupKiller>(context, pgid, timeout, std::move(done))
      ->Round();
}

}  // namespace internal

absl::Status KillProcessGroup(pid_t pgid, absl::Duration timeout) {
  if (pgid <= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing to kill process group ", pgid));
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (int round = 0;; ++round) {
    std::vector<pid_t> members = internal::ListProcessGroup(pgid);
    if (members.empty()) return absl::OkStatus();
    if (round >= internal::kMaxRounds || absl::Now() >= deadline) {
      return internal::Survivors(pgid, members);
    }
    std::vector<struct pollfd> fds;
    for (pid_t pid : members) {
      int fd = internal::PidfdOpen(pid);
      if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    }
    ::kill(-pgid, SIGKILL);
    // Wait until every pidfd is readable (its process exited), or the
    // deadline: an event wait, each poll() returns when one more has exited.
    size_t open = fds.size();
    while (open > 0) {
      int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (ms <= 0) break;
      int n = ::poll(fds.data(), fds.size(), static_cast<int>(ms));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      for (auto& p : fds) {
        if (p.fd >= 0 && p.revents != 0) {
          ::close(p.fd);
          p.fd = -1;  // poll() ignores negative fds
          --open;
        }
      }
    }
    for (auto& p : fds) {
      if (p.fd >= 0) ::close(p.fd);
    }
  }
}

}  // namespace plugd::broker
