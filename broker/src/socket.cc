#include "plugd/broker/socket.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "plugd/common/protocol.h"
#include "plugd/common/status.h"

namespace plugd::broker {
namespace {

constexpr size_t kMaxSocketDirBytes = 64;

std::string ErrnoText(int err) { return strerror(err); }

absl::Status ErrnoStatus(int err, absl::string_view what) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(what, ": ", ErrnoText(err)));
}

// In a directory made by MakeSocketDir: a file its maker holds an exclusive
// flock on for as long as it runs. The kernel drops the lock when the maker
// exits, however it ends (SIGKILL included), so a lock anyone can take marks
// a directory nobody will remove. Created under kOwnerLockTemp and renamed
// once locked, so that it is never seen unlocked while its maker lives.
constexpr char kOwnerLock[] = ".owner";
constexpr char kOwnerLockTemp[] = ".owner.new";

// The lock files' descriptors of the directories this process made, by
// path, closed by RemoveSocketDir. Never destroyed (no exit-time order).
struct OwnerLocks {
  std::mutex mu;
  std::map<std::string, int> fds;
};
OwnerLocks& Locks() {
  static auto* locks = new OwnerLocks();
  return *locks;
}

// Takes the owner lock of the new directory `dir`.
absl::Status LockOwnership(const std::string& dir) {
  const std::string temp = absl::StrCat(dir, "/", kOwnerLockTemp);
  int fd = ::open(temp.c_str(),
                  O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return ErrnoStatus(errno, absl::StrCat("cannot create ", temp));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0 ||
      ::rename(temp.c_str(), absl::StrCat(dir, "/", kOwnerLock).c_str()) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus(err, absl::StrCat("cannot lock ", temp));
  }
  std::lock_guard<std::mutex> lock(Locks().mu);
  Locks().fds[dir] = fd;
  return absl::OkStatus();
}

// Unlinks the files directly in the directory open as `dir_fd` (not
// recursively), the owner lock last and only if all else went: a directory
// left with something in it keeps its lock file, so that a later sweep tries
// again. True when it is empty.
bool EmptyDir(int dir_fd) {
  const int list_fd = ::dup(dir_fd);  // fdopendir takes the descriptor over
  DIR* dir = list_fd < 0 ? nullptr : ::fdopendir(list_fd);
  if (dir == nullptr) {
    if (list_fd >= 0) ::close(list_fd);
    return false;
  }
  bool all_gone = true;
  bool has_owner = false;
  while (struct dirent* entry = ::readdir(dir)) {
    absl::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (name == kOwnerLock) {
      has_owner = true;
      continue;
    }
    if (::unlinkat(dir_fd, entry->d_name, 0) != 0 && errno != ENOENT) {
      all_gone = false;
    }
  }
  ::closedir(dir);
  if (all_gone && has_owner && ::unlinkat(dir_fd, kOwnerLock, 0) != 0 &&
      errno != ENOENT) {
    all_gone = false;
  }
  return all_gone;
}

// Removes the directories under `base` that MakeSocketDir made for a process
// that has exited without removing its own (killed, crashed): those whose
// owner lock can be taken. Each is emptied through the descriptor of the
// directory whose lock is held, and the lock is kept until it is gone.
// Directories without an owner lock (made by something else, such as a
// daemon's socket_dir) and this process's own are left alone.
void RemoveAbandonedSocketDirs(const std::string& base) {
  std::vector<std::string> names;
  {
    DIR* dir = ::opendir(base.c_str());
    if (dir == nullptr) return;
    while (struct dirent* entry = ::readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      if (entry->d_type != DT_DIR && entry->d_type != DT_UNKNOWN) continue;
      names.emplace_back(entry->d_name);
    }
    ::closedir(dir);
  }
  const int base_fd = ::open(base.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (base_fd < 0) return;
  for (const std::string& name : names) {
    {
      std::lock_guard<std::mutex> lock(Locks().mu);
      if (Locks().fds.count(absl::StrCat(base, "/", name)) > 0) continue;
    }
    const int dir_fd = ::openat(
        base_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dir_fd < 0) continue;
    const int lock_fd =
        ::openat(dir_fd, kOwnerLock, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (lock_fd >= 0 && ::flock(lock_fd, LOCK_EX | LOCK_NB) == 0 &&
        EmptyDir(dir_fd)) {
      // Still the directory we emptied (not a new one of the same name).
      struct stat opened;
      struct stat named;
      if (::fstat(dir_fd, &opened) == 0 &&
          ::fstatat(base_fd, name.c_str(), &named, AT_SYMLINK_NOFOLLOW) == 0 &&
          opened.st_ino == named.st_ino && opened.st_dev == named.st_dev) {
        ::unlinkat(base_fd, name.c_str(), AT_REMOVEDIR);
      }
    }
    if (lock_fd >= 0) ::close(lock_fd);
    ::close(dir_fd);
  }
  ::close(base_fd);
}

enum class Probe { kNothing, kLive, kStale, kNotSocket };

// Looks at what is at `path`, connecting (non-blocking) if it is a socket.
absl::StatusOr<Probe> ProbeSocket(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Probe::kNothing;
    return ErrnoStatus(errno, absl::StrCat("cannot stat socket path ", path));
  }
  if (S_ISLNK(st.st_mode)) {
    // A go-plugin plugin's stable path: a symlink to the socket it chose.
    struct stat target;
    if (::stat(path.c_str(), &target) != 0) {
      // Dangling: the socket it pointed to is gone.
      if (errno == ENOENT) return Probe::kStale;
      return ErrnoStatus(errno, absl::StrCat("cannot stat socket path ", path));
    }
    if (!S_ISSOCK(target.st_mode)) return Probe::kNotSocket;
  } else if (!S_ISSOCK(st.st_mode)) {
    return Probe::kNotSocket;
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return ErrnoStatus(errno,
                       absl::StrCat("cannot create a socket to probe ", path));
  }
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("socket path ", path, " is too long"));
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int rc =
      ::connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr));
  int err = rc == 0 ? 0 : errno;
  ::close(fd);
  if (rc == 0 || err == EAGAIN || err == EINPROGRESS) {
    // Accepted, or a full backlog: either way a live process owns it.
    return Probe::kLive;
  }
  if (err == ECONNREFUSED) return Probe::kStale;
  if (err == ENOENT)
    return S_ISLNK(st.st_mode) ? Probe::kStale : Probe::kNothing;
  return ErrnoStatus(err, absl::StrCat("cannot probe socket ", path));
}

absl::Status Unlink(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno,
                       absl::StrCat("cannot remove stale socket ", path));
  }
  return absl::OkStatus();
}

// Creates `dir` 0700 if missing and checks it is a private directory of ours.
absl::Status EnsurePrivateDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, absl::StrCat("cannot create directory ", dir));
  }
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("cannot stat directory ", dir));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is not a directory (a symlink?); remove it"));
  }
  if (st.st_uid != ::geteuid()) {
    return absl::PermissionDeniedError(absl::StrCat(
        dir, " is owned by uid ", st.st_uid, ", not by this user (uid ",
        ::geteuid(), "); remove it or set XDG_RUNTIME_DIR"));
  }
  if ((st.st_mode & 077) != 0 && ::chmod(dir.c_str(), 0700) != 0) {
    return ErrnoStatus(errno, absl::StrCat("cannot make ", dir, " private"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PrepareSocketPath(const std::string& path) {
  PLUGD_RETURN_IF_ERROR(ValidateSocketPath(path));
  std::string dir = path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "socket directory ", dir, " of ", path,
        " does not exist; create it first (e.g. with MakeSocketDir())"));
  }
  PLUGD_ASSIGN_OR_RETURN(Probe probe, ProbeSocket(path));
  switch (probe) {
    case Probe::kNothing:
      return absl::OkStatus();
    case Probe::kLive:
      return absl::AlreadyExistsError(absl::StrCat(
          "socket ", path,
          " is in use: a live process accepts connections on it (another "
          "instance of the plugin?); stop it or choose another path"));
    case Probe::kNotSocket:
      return absl::AlreadyExistsError(
          absl::StrCat(path, " exists and is not a socket; not removing it"));
    case Probe::kStale:
      return Unlink(path);
  }
  return absl::OkStatus();
}

absl::Status RemoveStaleSocket(const std::string& path) {
  PLUGD_ASSIGN_OR_RETURN(Probe probe, ProbeSocket(path));
  if (probe == Probe::kStale) return Unlink(path);
  return absl::OkStatus();
}

absl::StatusOr<std::string> MakeSocketDir() {
  std::string base;
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && xdg[0] == '/' && ::access(xdg, W_OK | X_OK) == 0) {
    std::string candidate = absl::StrCat(xdg, "/plugd");
    if (candidate.size() + 7 <= kMaxSocketDirBytes &&
        EnsurePrivateDir(candidate).ok()) {
      base = candidate;
    }
  }
  if (base.empty()) {
    base = absl::StrCat("/tmp/plugd-", ::geteuid());
    PLUGD_RETURN_IF_ERROR(EnsurePrivateDir(base));
  }
  RemoveAbandonedSocketDirs(base);
  std::string templ = base + "/XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    return ErrnoStatus(
        errno, absl::StrCat("cannot create a socket directory in ", base));
  }
  if (absl::Status locked = LockOwnership(templ); !locked.ok()) {
    RemoveSocketDir(templ);
    return locked;
  }
  return templ;
}

void RemoveSocketDir(const std::string& path) {
  if (path.empty() || path == "/") return;
  int lock_fd = -1;
  {
    std::lock_guard<std::mutex> lock(Locks().mu);
    auto it = Locks().fds.find(path);
    if (it != Locks().fds.end()) {
      lock_fd = it->second;
      Locks().fds.erase(it);
    }
  }
  const int dir_fd =
      ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (dir_fd >= 0) {
    if (EmptyDir(dir_fd)) ::rmdir(path.c_str());
    ::close(dir_fd);
  }
  if (lock_fd >= 0) ::close(lock_fd);  // after the files: nobody sweeps it
}

}  // namespace plugd::broker
