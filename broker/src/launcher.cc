#include "plugd/broker/launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/process/v2/process.hpp>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "goplugin/grpc_controller.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "plugd/broker/launcher_testing.h"
#include "plugd/broker/socket.h"
#include "plugd/broker/spawn.h"
#include "plugd/common/channel.h"
#include "plugd/common/exec_policy.h"
#include "plugd/common/log.h"
#include "plugd/common/status.h"
#include "plugd/v1/plugin.grpc.pb.h"
#include "process_group.h"

extern char** environ;

namespace plugd::broker {
namespace internal {
namespace {
std::function<void(const LaunchOptions&)>& AfterExecutableVerifiedHook() {
  static auto* hook = new std::function<void(const LaunchOptions&)>();
  return *hook;
}
}  // namespace

void SetAfterExecutableVerifiedForTesting(
    std::function<void(const LaunchOptions&)> hook) {
  AfterExecutableVerifiedHook() = std::move(hook);
}
}  // namespace internal

namespace {

// The contexts of the launcher's calls being started (IsLauncherCall): a
// handful at most at any time, so a vector.
class LauncherCalls {
 public:
  static LauncherCalls& Get() {
    static auto* calls = new LauncherCalls();
    return *calls;
  }
  void Add(const grpc::ClientContext* context) {
    absl::MutexLock lock(&mu_);
    contexts_.push_back(context);
    starting_.fetch_add(1, std::memory_order_relaxed);
  }
  void Remove(const grpc::ClientContext* context) {
    absl::MutexLock lock(&mu_);
    contexts_.erase(std::find(contexts_.begin(), contexts_.end(), context));
    starting_.fetch_sub(1, std::memory_order_relaxed);
  }
  bool Contains(const grpc::ClientContext* context) {
    // The thread starting a launcher call sees its own Add; any other
    // thread's calls are not the launcher's whatever it reads here.
    if (starting_.load(std::memory_order_relaxed) == 0) return false;
    absl::MutexLock lock(&mu_);
    return std::find(contexts_.begin(), contexts_.end(), context) !=
           contexts_.end();
  }

 private:
  absl::Mutex mu_;
  std::vector<const grpc::ClientContext*> contexts_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> starting_{0};
};

// Marks `context` as the launcher's while the call on it is started (gRPC
// creates the call's interceptors then); the call's context must outlive it.
class LauncherCallMark {
 public:
  explicit LauncherCallMark(const grpc::ClientContext* context)
      : context_(context) {
    LauncherCalls::Get().Add(context_);
  }
  ~LauncherCallMark() { LauncherCalls::Get().Remove(context_); }
  LauncherCallMark(const LauncherCallMark&) = delete;
  LauncherCallMark& operator=(const LauncherCallMark&) = delete;

 private:
  const grpc::ClientContext* const context_;
};

namespace asio = boost::asio;
namespace bp = boost::process::v2;

using Executor = asio::io_context::executor_type;
using Process = bp::basic_process<Executor>;
// A plugin's stdout or stderr, read when it turns readable.
using Pipe = asio::posix::stream_descriptor;

// After the leader exits, how long leftovers of its group may take to die.
constexpr absl::Duration kGroupKillTimeout = absl::Seconds(5);
// After a plugin exits before its handshake, how long to wait for the rest of
// its output (a leftover may hold the pipes) before composing the error.
constexpr absl::Duration kDrainAfterExit = absl::Seconds(1);
// Hang guard for the launcher's own waits, beyond the plugin's timeouts.
constexpr absl::Duration kHangGuard = absl::Seconds(30);
// The shortest health-check deadline, even when the handshake came late.
constexpr absl::Duration kMinConnectDeadline = absl::Milliseconds(100);
constexpr size_t kReadBufferBytes = size_t{64} * 1024;
constexpr size_t kErrorStderrLines = 10;
constexpr size_t kMaxEarlyStdoutBytes = 4096;
// go-plugin names its socket $TMPDIR/plugin<random uint32>: at most 16 bytes
// after the directory and its slash.
constexpr size_t kGoPluginSocketNameBytes = 16;
// The socket a plugd plugin running as another user listens on, in its own
// directory (see MakeRunDir).
constexpr char kRunDirSocketName[] = "plugin.sock";
// Where run-as plugins get their socket directories: a directory every user
// can search (the launcher's own socket directory is private).
constexpr char kRunDirBase[] = "/tmp";
// mkdtemp's "/plugd-u<uid>.XXXXXX": at most 30 bytes after the base.
constexpr size_t kRunDirNameBytes = 30;
// What go-plugin's plugin.Serve prints when the cookie does not match.
constexpr char kGoPluginCookieRefusal[] = "This binary is a plugin";

// The directory part of a socket path ("/" for "/x.sock").
std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == 0 || slash == std::string::npos) return "/";
  return path.substr(0, slash);
}

// Quotes `text` for an error message (see QuoteForMessage).
std::string Quote(absl::string_view text, size_t max = 300) {
  return QuoteForMessage(text, max);
}

std::string SignalName(int sig) {
  switch (sig) {
    case SIGHUP:
      return "SIGHUP";
    case SIGINT:
      return "SIGINT";
    case SIGQUIT:
      return "SIGQUIT";
    case SIGILL:
      return "SIGILL";
    case SIGTRAP:
      return "SIGTRAP";
    case SIGABRT:
      return "SIGABRT";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGKILL:
      return "SIGKILL";
    case SIGUSR1:
      return "SIGUSR1";
    case SIGSEGV:
      return "SIGSEGV";
    case SIGUSR2:
      return "SIGUSR2";
    case SIGPIPE:
      return "SIGPIPE";
    case SIGALRM:
      return "SIGALRM";
    case SIGTERM:
      return "SIGTERM";
    case SIGCHLD:
      return "SIGCHLD";
    case SIGXCPU:
      return "SIGXCPU";
    case SIGXFSZ:
      return "SIGXFSZ";
    case SIGSYS:
      return "SIGSYS";
    default:
      return absl::StrCat("SIG", sig);
  }
}

absl::Status ErrnoStatus(int err, absl::string_view what) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(what, ": ", strerror(err)));
}

// Marks every descriptor from 3 up close-on-exec (async-signal-safe).
void CloseOnExecFrom3() {
#if defined(SYS_close_range)
  constexpr unsigned int kCloseRangeCloexec = 1U << 2;  // CLOSE_RANGE_CLOEXEC
  if (::syscall(SYS_close_range, 3U, ~0U, kCloseRangeCloexec) == 0) return;
#endif
  struct rlimit limit;
  int max_fd = 65536;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 65536) {
    max_fd = static_cast<int>(limit.rlim_cur);
  }
  for (int fd = 3; fd < max_fd; ++fd) {
    int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
}

// Writes "plugd launcher: <step>" to the child's stderr (the plugin's stderr
// pipe, which the launcher reads when the start fails) and returns the errno
// of the failed step. Async-signal-safe; keeps errno (VforkLauncher reports
// it).
bp::error_code ChildFailure(const char* step) {
  const int err = errno;
  constexpr char kPrefix[] = "plugd launcher: ";
  internal::ChildWrite(STDERR_FILENO, kPrefix, sizeof(kPrefix) - 1);
  internal::ChildWrite(STDERR_FILENO, step, ::strlen(step));
  internal::ChildWrite(STDERR_FILENO, "\n", 1);
  errno = err;
  return bp::error_code(err, bp::system_category());
}

// One setrlimit to apply in the child.
struct ChildLimit {
  int resource;
  rlim_t value;      // the soft limit
  const char* step;  // for ChildFailure
  rlim_t hard = 0;   // 0: the same as `value`
};

// The Boost.Process initializer that prepares the child between the clone
// and exec. It runs under CloneVfork's rules (plugd/broker/spawn.h): only
// async-signal-safe calls, nothing allocated, no memory of the parent
// written (the child shares it until exec).
struct ChildSetup {
  pid_t parent_pid;
  int stdin_fd;
  int stdout_fd;
  int stderr_fd;
  const char* working_dir;  // nullptr: keep the launcher's
  // Resource limits, applied before the user changes.
  const ChildLimit* limits = nullptr;
  size_t limit_count = 0;
  // Run as another user: set when run_as.
  bool change_ids = false;
  uid_t uid = 0;
  gid_t gid = 0;
  const gid_t* groups = nullptr;
  size_t group_count = 0;
  // >= 0: execute this descriptor (the hashed executable) with execveat
  // instead of letting Boost exec the path; `envp` is the environment.
  int exec_fd = -1;
  // The descriptor is a `#!` script: keep it open across exec, the
  // interpreter reads the script from /dev/fd/<exec_fd>.
  bool exec_fd_is_script = false;
  const char* const* envp = nullptr;

  bp::error_code on_exec_setup(bp::posix::default_launcher&,
                               const bp::filesystem::path&,
                               const char* const* argv) {
    // Own process group (pgid == pid), so the whole plugin can be signalled.
    ::setpgid(0, 0);
    // Die with the launcher's loop thread...
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // ...which may already have happened, between the clone and prctl.
    if (::getppid() != parent_pid) ::_exit(1);
    // A host may have blocked or ignored signals; the plugin starts clean.
    // (CloneVfork has reset the caught ones; every signal is blocked until
    // here.)
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGQUIT}) {
      ::signal(sig, SIG_DFL);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(stdin_fd, STDIN_FILENO) < 0 ||
        ::dup2(stdout_fd, STDOUT_FILENO) < 0 ||
        ::dup2(stderr_fd, STDERR_FILENO) < 0) {
      return bp::error_code(errno, bp::system_category());
    }
    for (size_t i = 0; i < limit_count; ++i) {
      struct rlimit limit = {limits[i].value, limits[i].hard != 0
                                                  ? limits[i].hard
                                                  : limits[i].value};
      if (::setrlimit(limits[i].resource, &limit) != 0) {
        return ChildFailure(limits[i].step);
      }
    }
    if (change_ids) {
      // Raw system calls: they change this (only) thread's credentials,
      // without glibc's all-threads broadcast machinery.
      if (::syscall(SYS_setgroups, group_count, groups) != 0) {
        return ChildFailure("setgroups");
      }
      if (::syscall(SYS_setresgid, gid, gid, gid) != 0) {
        return ChildFailure("setresgid");
      }
      if (::syscall(SYS_setresuid, uid, uid, uid) != 0) {
        return ChildFailure("setresuid");
      }
      // A credential change clears the parent-death signal: set it again.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent_pid) ::_exit(1);
    }
    // After the user change, so the plugin's user must be allowed in.
    if (working_dir != nullptr && ::chdir(working_dir) != 0) {
      return ChildFailure("chdir to the working directory");
    }
    // No descriptor of the host leaks into the plugin (Boost 1.81's own
    // close_all skips the range below its error pipe).
    CloseOnExecFrom3();
    if (exec_fd < 0) return bp::error_code();  // VforkLauncher execs the path.
    if (exec_fd_is_script && ::fcntl(exec_fd, F_SETFD, 0) != 0) {
      return ChildFailure("keeping the script descriptor open");
    }
    // The very file that was hashed. Returns only on failure.
    ::syscall(SYS_execveat, exec_fd, "", argv, envp, AT_EMPTY_PATH);
    return ChildFailure("execveat of the verified executable");
  }
};

// A pipe whose both ends are close-on-exec and above stderr (so dup2 onto
// 0/1/2 in the child cannot clobber one another).
absl::Status MakePipe(int fds[2]) {
  if (const int err = internal::MakePipeAboveStderr(fds, O_CLOEXEC); err != 0) {
    return ErrnoStatus(err, "cannot create a pipe");
  }
  return absl::OkStatus();
}

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         ::access(path.c_str(), X_OK) == 0;
}

absl::StatusOr<std::string> ResolveExecutable(const LaunchOptions& options) {
  const std::string& program = options.command.front();
  auto not_found = [&](const std::string& path) {
    return absl::NotFoundError(absl::StrCat("plugin ", options.name,
                                            ": executable ", path,
                                            " not found (or not executable)"));
  };
  if (program.find('/') != std::string::npos) {
    std::string path = program;
    if (path.front() != '/') {
      // Relative to the launcher's working directory, not the plugin's.
      char cwd[4096];
      if (::getcwd(cwd, sizeof(cwd)) == nullptr) {
        return ErrnoStatus(errno, absl::StrCat("plugin ", options.name,
                                               ": cannot resolve ", program));
      }
      path = absl::StrCat(cwd, "/", path);
    }
    if (!IsExecutableFile(path)) return not_found(path);
    return path;
  }
  std::string search_path;
  auto env_path = options.env.find("PATH");
  if (env_path != options.env.end()) {
    search_path = env_path->second;
  } else if (!options.inherit_environment) {
    search_path = kMinimalPath;  // the PATH the plugin gets
  } else if (const char* p = std::getenv("PATH")) {
    search_path = p;
  } else {
    search_path = kMinimalPath;
  }
  for (absl::string_view dir : absl::StrSplit(search_path, ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", program);
    if (IsExecutableFile(candidate)) {
      if (candidate.front() != '/') {
        char cwd[4096];
        if (::getcwd(cwd, sizeof(cwd)) != nullptr) {
          candidate = absl::StrCat(cwd, "/", candidate);
        }
      }
      return candidate;
    }
  }
  return not_found(absl::StrCat(program, " (searched PATH=", search_path, ")"));
}

absl::Status ValidateOptions(const LaunchOptions& options) {
  if (options.name.empty()) {
    return absl::InvalidArgumentError(
        "launch options: name is empty; give the plugin a name");
  }
  auto invalid = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("plugin ", options.name, ": launch options: ", what));
  };
  if (options.command.empty() || options.command.front().empty()) {
    return invalid("command is empty; set command[0] to the executable");
  }
  absl::Status socket = ValidateSocketPath(options.socket_path);
  if (!socket.ok()) return invalid(socket.message());
  if (options.start_timeout <= absl::ZeroDuration()) {
    return invalid(absl::StrCat("start_timeout is ",
                                absl::FormatDuration(options.start_timeout),
                                "; it must be positive"));
  }
  if (options.stop_grace <= absl::ZeroDuration()) {
    return invalid(absl::StrCat("stop_grace is ",
                                absl::FormatDuration(options.stop_grace),
                                "; it must be positive"));
  }
  if (options.protocol_versions.empty()) {
    return invalid(
        "protocol_versions is empty; list the versions the host "
        "supports, e.g. {1}");
  }
  for (uint32_t v : options.protocol_versions) {
    if (v == 0)
      return invalid("protocol_versions holds 0; versions start at 1");
  }
  if (options.max_message_bytes <= 0) {
    return invalid("max_message_bytes must be positive");
  }
  if (options.go_plugin) {
    const GoPluginOptions& go = *options.go_plugin;
    if (go.magic_cookie_key.empty() || go.magic_cookie_value.empty()) {
      return invalid(
          "go_plugin needs the application's magic cookie: set "
          "magic_cookie_key and magic_cookie_value to the plugin's "
          "plugin.HandshakeConfig MagicCookieKey and MagicCookieValue");
    }
    if (go.magic_cookie_key.find('=') != std::string::npos ||
        go.magic_cookie_key.find('\0') != std::string::npos ||
        go.magic_cookie_value.find('\0') != std::string::npos) {
      return invalid(absl::StrCat("go_plugin magic cookie key ",
                                  Quote(go.magic_cookie_key),
                                  " is not a valid environment variable name "
                                  "(or the value holds a NUL)"));
    }
    if (go.min_port > go.max_port || go.max_port > 65535) {
      return invalid(absl::StrCat("go_plugin port range ", go.min_port, "..",
                                  go.max_port,
                                  " is not valid; need min_port <= max_port "
                                  "<= 65535"));
    }
    const std::string dir = DirName(options.socket_path);
    if (dir.size() + 1 + kGoPluginSocketNameBytes > kMaxSocketPathBytes) {
      return invalid(absl::StrCat(
          "socket directory ", dir, " is ", dir.size(),
          " bytes; a go-plugin plugin creates its socket there with a name of "
          "up to ",
          kGoPluginSocketNameBytes,
          " bytes and Unix socket paths are limited "
          "to ",
          kMaxSocketPathBytes, " bytes: choose a shorter socket directory"));
    }
  }
  if (!options.working_dir.empty()) {
    struct stat st;
    if (::stat(options.working_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return invalid(absl::StrCat("working_dir ", options.working_dir,
                                  " is not a directory"));
    }
  }
  for (const auto& [key, value] : options.env) {
    if (key.empty() || key.find('=') != std::string::npos) {
      return invalid(absl::StrCat("env key ", Quote(key), " is not valid"));
    }
  }
  if (!options.executable_sha256.empty()) {
    absl::StatusOr<std::string> pin = ParseSha256Pin(options.executable_sha256);
    if (!pin.ok()) {
      return invalid(
          absl::StrCat("executable_sha256: ", pin.status().message()));
    }
  }
  const ResourceLimits& limits = options.limits;
  for (const auto& [value, name] :
       {std::make_pair(limits.address_space_bytes, "address_space_bytes"),
        std::make_pair(limits.open_files, "open_files"),
        std::make_pair(limits.cpu_seconds, "cpu_seconds"),
        std::make_pair(limits.processes, "processes")}) {
    if (value && (*value == 0 || *value >= RLIM_INFINITY)) {
      return invalid(absl::StrCat("limits.", name, " is ", *value,
                                  "; it must be at least 1 (leave it unset "
                                  "for no limit)"));
    }
  }
  if (options.run_as) {
    if (::geteuid() != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin ", options.name, ": launch options: run_as (",
          options.run_as->description.empty()
              ? absl::StrCat("uid ", options.run_as->uid)
              : options.run_as->description,
          ") needs the launcher to run as root, but it runs as uid ",
          ::geteuid(), "; run it as root or drop run_as"));
    }
    const size_t socket_bytes =
        std::strlen(kRunDirBase) + kRunDirNameBytes + 1 +
        (options.go_plugin ? kGoPluginSocketNameBytes
                           : std::strlen(kRunDirSocketName));
    if (socket_bytes > kMaxSocketPathBytes) {
      return invalid("run_as socket directory path is too long");
    }
  }
  return absl::OkStatus();
}

// The executable to run, opened and checked against its pin.
struct VerifiedExecutable {
  int fd = -1;          // O_RDONLY | O_CLOEXEC
  bool script = false;  // starts with "#!"
};

// Opens `path` and hashes the open descriptor (SHA-256, OpenSSL's EVP);
// FAILED_PRECONDITION with both hashes unless it matches `pin`.
absl::StatusOr<VerifiedExecutable> OpenVerifiedExecutable(
    const LaunchOptions& options, const std::string& path) {
  PLUGD_ASSIGN_OR_RETURN(std::string expected,
                         ParseSha256Pin(options.executable_sha256));
  const std::string what =
      absl::StrCat("plugin ", options.name, ": executable ", path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd >= 0 && fd <= STDERR_FILENO) {
    // Above stderr, so the child's dup2 onto 0/1/2 cannot clobber it.
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    ::close(fd);
    fd = moved;
  }
  if (fd < 0) {
    const int err = errno;
    return absl::Status(err == ENOENT ? absl::StatusCode::kNotFound
                                      : absl::ErrnoToStatusCode(err),
                        absl::StrCat(what,
                                     ": cannot open it to check its "
                                     "sha256 pin: ",
                                     strerror(err)));
  }
  auto fail = [fd](absl::Status status) {
    ::close(fd);
    return status;
  };
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return fail(
        absl::NotFoundError(absl::StrCat(what, " is not a regular file")));
  }
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(),
                                                         EVP_MD_CTX_free);
  if (ctx == nullptr ||
      EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return fail(absl::InternalError(
        absl::StrCat(what, ": cannot initialise SHA-256 (OpenSSL)")));
  }
  std::unique_ptr<char[]> buffer(new char[kReadBufferBytes]);
  VerifiedExecutable result;
  off_t offset = 0;
  for (;;) {
    const ssize_t n = ::pread(fd, buffer.get(), kReadBufferBytes, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return fail(ErrnoStatus(errno, absl::StrCat(what, ": cannot read it")));
    }
    if (n == 0) break;
    if (offset == 0)
      result.script = n >= 2 && buffer[0] == '#' && buffer[1] == '!';
    EVP_DigestUpdate(ctx.get(), buffer.get(), static_cast<size_t>(n));
    offset += n;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &digest_size);
  const std::string actual = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), digest_size));
  if (actual != expected) {
    absl::Status mismatch = absl::FailedPreconditionError(absl::StrCat(
        what, " does not match its pin: expected sha256:", expected,
        ", the file has sha256:", actual,
        "; refused to run it. If this binary is the intended one, update the "
        "pin (sha256: in the config, LaunchOptions::executable_sha256) to "
        "sha256:",
        actual, " (`sha256sum ", path, "`); otherwise restore the file"));
    mismatch.SetPayload(kExecutableMismatchPayload,
                        absl::Cord(absl::StrCat("sha256:", actual)));
    return fail(std::move(mismatch));
  }
  result.fd = fd;
  return result;
}

// A directory for a plugin that runs as another user: the launcher's socket
// directory is private (0700) to the launcher, so the plugin could not
// create its socket there. Made with mkdtemp under kRunDirBase (so nobody can
// have prepared it), then given to the plugin's user, mode 0700.
absl::StatusOr<std::string> MakeRunDir(const LaunchOptions& options) {
  std::string templ =
      absl::StrCat(kRunDirBase, "/plugd-u", options.run_as->uid, ".XXXXXX");
  if (::mkdtemp(templ.data()) == nullptr) {
    return ErrnoStatus(errno, absl::StrCat("plugin ", options.name,
                                           ": cannot create a socket "
                                           "directory under ",
                                           kRunDirBase, " for its user"));
  }
  if (::chown(templ.c_str(), options.run_as->uid, options.run_as->gid) != 0) {
    const int err = errno;
    ::rmdir(templ.c_str());
    return ErrnoStatus(
        err, absl::StrCat("plugin ", options.name,
                          ": cannot give its socket directory ", templ,
                          " to uid ", options.run_as->uid));
  }
  return templ;
}

// Removes a run-as socket directory: only the socket names the launcher
// knows, then the directory if it is empty (never a recursive removal as root
// in a directory another user owns).
void RemoveRunDir(const std::string& dir, const std::string& extra_socket) {
  if (dir.empty()) return;
  ::unlink(absl::StrCat(dir, "/", kRunDirSocketName).c_str());
  if (!extra_socket.empty() && DirName(extra_socket) == dir) {
    ::unlink(extra_socket.c_str());
  }
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
    PLUGD_LOG(WARNING) << "cannot remove the plugin socket directory " << dir
                       << ": " << strerror(errno);
  }
}

// `run_dir`: the run-as socket directory, or empty.
std::vector<std::string> BuildEnvironment(const LaunchOptions& options,
                                          const std::string& run_dir) {
  std::map<std::string, std::string> env;
  if (options.inherit_environment) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      absl::string_view entry = *e;
      size_t eq = entry.find('=');
      if (eq == absl::string_view::npos) continue;
      env[std::string(entry.substr(0, eq))] = std::string(entry.substr(eq + 1));
    }
  } else {
    // Nothing of the launcher's environment (secrets, tokens): a minimal
    // PATH, unless `env` gives one.
    env["PATH"] = kMinimalPath;
  }
  for (const auto& [key, value] : options.env) env[key] = value;
  if (options.go_plugin) {
    // go-plugin's variables only: a plugd SDK plugin that also knows the
    // application's cookie then runs in its go-plugin mode.
    env.erase(kEnvMagicCookieKey);
    env.erase(kEnvSocket);
    env.erase(kEnvProtocolVersions);
    const GoPluginOptions& go = *options.go_plugin;
    env[go.magic_cookie_key] = go.magic_cookie_value;
    env[kEnvGoPluginProtocolVersions] =
        FormatVersionList(options.protocol_versions);
    env[kEnvGoPluginMinPort] = absl::StrCat(go.min_port);
    env[kEnvGoPluginMaxPort] = absl::StrCat(go.max_port);
    // go-plugin creates its socket with ioutil.TempFile("", "plugin"): in
    // our private directory, not in a world-writable /tmp.
    env["TMPDIR"] = run_dir.empty() ? DirName(options.socket_path) : run_dir;
  } else {
    env[kEnvMagicCookieKey] = kMagicCookieValue;
    env[kEnvSocket] = run_dir.empty()
                          ? options.socket_path
                          : absl::StrCat(run_dir, "/", kRunDirSocketName);
    env[kEnvProtocolVersions] = FormatVersionList(options.protocol_versions);
  }
  env[kEnvPluginName] = options.name;
  // Who the plugin lets connect besides its own uid and root: the broker
  // or host that launched it (docs/security.md).
  env[kEnvLauncherUid] = absl::StrCat(geteuid());
  env[kEnvMaxMessageBytes] = absl::StrCat(options.max_message_bytes);
  env[kEnvShutdownGraceMs] =
      absl::StrCat(absl::ToInt64Milliseconds(options.stop_grace));
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [key, value] : env)
    out.push_back(absl::StrCat(key, "=", value));
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// ExitStatus

ExitStatus ExitStatus::FromWaitStatus(int wait_status) {
  ExitStatus status;
  if (WIFSIGNALED(wait_status)) {
    status.signaled = true;
    status.signal = WTERMSIG(wait_status);
    status.core_dumped = WCOREDUMP(wait_status);
  } else if (WIFEXITED(wait_status)) {
    status.code = WEXITSTATUS(wait_status);
  } else {
    status.code = -1;
  }
  return status;
}

std::string ExitStatus::ToString() const {
  if (signaled) {
    return absl::StrCat("killed by signal ", signal, " (", SignalName(signal),
                        core_dumped ? ", core dumped" : "", ")");
  }
  if (code < 0) return "exited with an unknown status";
  return absl::StrCat("exited with code ", code);
}

void SetStartProcess(pid_t pid, const std::optional<ExitStatus>& exit,
                     absl::Status* status) {
  std::string text = absl::StrCat("pid ", pid);
  if (exit) {
    absl::StrAppend(&text, exit->signaled
                               ? absl::StrCat(" signal ", exit->signal,
                                              exit->core_dumped ? " core" : "")
                               : absl::StrCat(" code ", exit->code));
  }
  status->SetPayload(kStartProcessPayload, absl::Cord(text));
}

namespace {

// What a kStartProcessPayload says ("pid N[ signal|code N[ core]]"); a pid
// of 0 when there is none or it is malformed.
struct StartProcess {
  pid_t pid = 0;
  std::optional<ExitStatus> exit;
};

StartProcess ParseStartProcess(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kStartProcessPayload);
  if (!payload) return {};
  const std::vector<std::string> words =
      absl::StrSplit(std::string(*payload), ' ');
  StartProcess parsed;
  if (words.size() < 2 || words[0] != "pid" ||
      !absl::SimpleAtoi(words[1], &parsed.pid)) {
    return {};
  }
  int n = 0;
  if (words.size() >= 4 && absl::SimpleAtoi(words[3], &n)) {
    ExitStatus exit;
    if (words[2] == "signal") {
      exit.signaled = true;
      exit.signal = n;
      exit.core_dumped = words.size() > 4 && words[4] == "core";
      parsed.exit = exit;
    } else if (words[2] == "code") {
      exit.code = n;
      parsed.exit = exit;
    }
  }
  return parsed;
}

}  // namespace

pid_t StartPid(const absl::Status& status) {
  return ParseStartProcess(status).pid;
}

std::optional<ExitStatus> StartExit(const absl::Status& status) {
  return ParseStartProcess(status).exit;
}

std::string DescribeLimitExit(const ResourceLimits& limits,
                              const ExitStatus& status,
                              const std::vector<std::string>& last_lines) {
  std::vector<std::string> reasons;
  if (limits.cpu_seconds && (status.signaled && (status.signal == SIGXCPU ||
                                                 status.signal == SIGKILL))) {
    reasons.push_back(absl::StrCat("CPU limit ", *limits.cpu_seconds,
                                   "s (limits.cpu_seconds) reached",
                                   status.signal == SIGXCPU ? "" : "?"));
  }
  if (limits.address_space_bytes) {
    bool memory = status.signaled &&
                  (status.signal == SIGABRT || status.signal == SIGSEGV ||
                   status.signal == SIGBUS || status.signal == SIGKILL);
    static const char* const kOutOfMemory[] = {"out of memory",
                                               "bad_alloc",
                                               "MemoryError",
                                               "Cannot allocate memory",
                                               "cannot allocate memory",
                                               "heap out of memory",
                                               "allocation failed"};
    for (const std::string& line : last_lines) {
      for (const char* marker : kOutOfMemory) {
        if (absl::StrContains(line, marker)) memory = true;
      }
    }
    if (memory && !status.success()) {
      reasons.push_back(absl::StrCat("memory limit ",
                                     FormatBytes(*limits.address_space_bytes),
                                     " (limits.address_space) reached?"));
    }
  }
  return absl::StrJoin(reasons, "; ");
}

// ---------------------------------------------------------------------------
// PluginProcess::Impl. Everything not under mu_ belongs to the loop thread.

class PluginProcess::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(EventLoop& loop, LaunchOptions options, std::string executable,
       VerifiedExecutable verified, std::string run_dir)
      : loop_(loop),
        options_(std::move(options)),
        executable_(std::move(executable)),
        verified_(verified),
        run_dir_(std::move(run_dir)),
        output_(options_.name, options_.output),
        stdout_pipe_(loop.context()),
        stderr_pipe_(loop.context()),
        stdout_lines_(options_.output.max_line_bytes),
        stderr_lines_(options_.output.max_line_bytes),
        start_timer_(loop.context()),
        drain_timer_(loop.context()),
        stop_timer_(loop.context()),
        exit_fd_(loop.context()) {}

  ~Impl() {
    CloseVerified();
    // Normally gone already (OnGroupGone); not when the spawn failed.
    RemoveRunDir(run_dir_, "");
  }

  void CloseVerified() {
    if (verified_.fd >= 0) ::close(verified_.fd);
    verified_.fd = -1;
  }

  EventLoop& loop() { return loop_; }
  const LaunchOptions& options() const { return options_; }
  OutputCapture& output() { return output_; }
  const Handshake& handshake() const { return handshake_; }
  // Written once, on the loop, before Launch returns; never changed after.
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  pid_t pid() const {
    absl::MutexLock lock(&mu_);
    return pid_;
  }

  std::optional<ExitStatus> exit_status() const {
    absl::MutexLock lock(&mu_);
    return exit_status_;
  }

  // Loop thread. Forks and execs the plugin; on success `handshake` will
  // receive the handshake (or why there is none).
  absl::Status Spawn(std::future<absl::StatusOr<Handshake>>* handshake) {
    int out[2] = {-1, -1};
    int err[2] = {-1, -1};
    absl::Status piped = MakePipe(out);
    if (piped.ok()) piped = MakePipe(err);
    int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull >= 0 && devnull <= STDERR_FILENO) {
      int moved = ::fcntl(devnull, F_DUPFD_CLOEXEC, 3);
      ::close(devnull);
      devnull = moved;
    }
    if (piped.ok() && devnull < 0) {
      piped = ErrnoStatus(errno, "cannot open /dev/null");
    }
    auto close_all = [&] {
      for (int fd : {out[0], out[1], err[0], err[1], devnull}) {
        if (fd >= 0) ::close(fd);
      }
    };
    if (!piped.ok()) {
      close_all();
      return Annotate(piped, absl::StrCat("plugin ", options_.name));
    }

    std::vector<std::string> env = BuildEnvironment(options_, run_dir_);
    std::vector<const char*> envp;
    for (const std::string& e : env) envp.push_back(e.c_str());
    envp.push_back(nullptr);
    std::vector<std::string> args(options_.command.begin() + 1,
                                  options_.command.end());

    const pid_t parent = ::getpid();
    ChildSetup setup{
        parent, devnull, out[1], err[1],
        options_.working_dir.empty() ? nullptr : options_.working_dir.c_str()};
    std::vector<ChildLimit> limits;
    const ResourceLimits& l = options_.limits;
    if (l.address_space_bytes) {
      limits.push_back({RLIMIT_AS, static_cast<rlim_t>(*l.address_space_bytes),
                        "setrlimit(RLIMIT_AS)"});
    }
    if (l.open_files) {
      limits.push_back({RLIMIT_NOFILE, static_cast<rlim_t>(*l.open_files),
                        "setrlimit(RLIMIT_NOFILE)"});
    }
    if (l.cpu_seconds) {
      // The hard limit one second later: with soft == hard the kernel
      // sends SIGKILL at once; this way the plugin gets SIGXCPU (which kills
      // it unless handled, and says why), and SIGKILL a second later.
      limits.push_back({RLIMIT_CPU, static_cast<rlim_t>(*l.cpu_seconds),
                        "setrlimit(RLIMIT_CPU)",
                        static_cast<rlim_t>(*l.cpu_seconds + 1)});
    }
    if (l.processes) {
      limits.push_back({RLIMIT_NPROC, static_cast<rlim_t>(*l.processes),
                        "setrlimit(RLIMIT_NPROC)"});
    }
    setup.limits = limits.data();
    setup.limit_count = limits.size();
    if (options_.run_as) {
      setup.change_ids = true;
      setup.uid = options_.run_as->uid;
      setup.gid = options_.run_as->gid;
      setup.groups = options_.run_as->groups.data();
      setup.group_count = options_.run_as->groups.size();
    }
    setup.exec_fd = verified_.fd;
    setup.exec_fd_is_script = verified_.script;
    setup.envp = envp.data();
    internal::VforkLauncher launcher;
    launcher.env = envp.data();
    // A child that changes its user must not share the launcher's memory
    // (plugd/broker/spawn.h): it gets a copy, as with fork.
    if (options_.run_as) launcher.memory = internal::ChildMemory::kCopied;
    bp::error_code ec;
    std::optional<Process> process;
    started_ = absl::Now();
    // Set when Boost threw after the clone: the child may have executed the
    // plugin and be running (Boost's process handle registers a pidfd with
    // the loop, which can fail after a good exec).
    bool child_may_run = false;
    try {
      process.emplace(launcher(loop_.context().get_executor(), ec,
                               bp::filesystem::path(executable_), args, setup));
    } catch (const std::exception& e) {
      ec = bp::error_code(EAGAIN, bp::system_category());
      child_may_run = true;
      PLUGD_LOG(ERROR) << "plugin " << options_.name
                       << ": spawn threw: " << e.what();
    }
    ::close(out[1]);
    ::close(err[1]);
    ::close(devnull);
    // The child has the descriptor (or has executed it): no longer needed.
    CloseVerified();
    if (ec || !process || process->id() <= 0) {
      // The child (if any) failed before or at exec and is exiting: reap it.
      // One that may be running is killed first, or this wait never ends.
      if (launcher.pid > 0) {
        if (child_may_run) {
          ::kill(-launcher.pid, SIGKILL);
          ::kill(launcher.pid, SIGKILL);
        }
        while (::waitpid(launcher.pid, nullptr, 0) < 0 && errno == EINTR) {
        }
      }
      // Which setup step failed, when the child said so on its stderr (it
      // has exited: the pipe holds all it wrote).
      std::string step;
      if (launcher.pid > 0) {
        char buffer[512];
        ssize_t n;
        while ((n = ::read(err[0], buffer, sizeof(buffer))) < 0 &&
               errno == EINTR) {
        }
        if (n > 0) {
          absl::string_view text(buffer, static_cast<size_t>(n));
          const size_t at = text.rfind("plugd launcher: ");
          if (at != absl::string_view::npos) {
            step = std::string(absl::StripTrailingAsciiWhitespace(
                text.substr(at + std::strlen("plugd launcher: "))));
          }
        }
      }
      ::close(out[0]);
      ::close(err[0]);
      int code = ec ? ec.value() : EAGAIN;
      // The executable was checked up front; failing exec means it is not
      // one after all (a script without #!, a binary for another machine).
      absl::StatusCode status_code =
          (code == ENOENT || code == EACCES || code == ENOEXEC ||
           code == ENOTDIR || code == ELOOP)
              ? absl::StatusCode::kNotFound
              : absl::ErrnoToStatusCode(code);
      std::string hint;
      if (options_.run_as && (code == EACCES || code == EPERM)) {
        hint = absl::StrCat(
            " (it runs as ",
            options_.run_as->description.empty()
                ? absl::StrCat("uid ", options_.run_as->uid)
                : options_.run_as->description,
            ": that user needs search permission on every directory up to "
            "the executable and the working directory, and execute "
            "permission on the executable)");
      }
      if (!step.empty()) {
        status_code = absl::ErrnoToStatusCode(code);
        if (code == ENOENT || code == ENOEXEC) {
          status_code = absl::StatusCode::kNotFound;
        }
      }
      return absl::Status(
          status_code,
          absl::StrCat("plugin ", options_.name, ": cannot start ", executable_,
                       ": ", step.empty() ? "" : absl::StrCat(step, ": "),
                       ec ? ec.message() : "spawn failed", hint));
    }

    const pid_t pid = process->id();
    {
      absl::MutexLock lock(&mu_);
      pid_ = pid;
    }
    // The exit is watched on a pidfd of our own, not with Boost's
    // async_wait: that one reaps with a blocking waitpid() as soon as its
    // pidfd is reported ready, and a stale readiness can reach it (see
    // OnExitFdReady). Detaching closes Boost's pidfd and leaves the child
    // alone; it stays ours to reap.
    process->detach();
    process.reset();
    int pidfd = internal::PidfdOpen(pid);
    if (pidfd >= 0) exit_fd_.assign(pidfd, ec);
    if (pidfd < 0 || ec) {
      const int errnum = pidfd < 0 ? errno : ec.value();
      if (pidfd >= 0 && !exit_fd_.is_open()) ::close(pidfd);
      // Not watchable: do not leave it running. It was just SIGKILLed, so
      // this wait is short.
      ::kill(-pid, SIGKILL);
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
      ::close(out[0]);
      ::close(err[0]);
      return ErrnoStatus(errnum, absl::StrCat("plugin ", options_.name,
                                              ": cannot watch process ", pid));
    }
    stdout_pipe_.assign(out[0], ec);
    if (!ec) stderr_pipe_.assign(err[0], ec);
    // Read only when readable, and never wait in the read (OnReadable).
    if (!ec) stdout_pipe_.non_blocking(true, ec);
    if (!ec) stderr_pipe_.non_blocking(true, ec);
    if (ec) {
      // Cannot happen short of the loop's reactor failing; no output then
      // (the reads below end at once on the closed pipes: never a blocking
      // read on the loop).
      PLUGD_LOG(ERROR) << "plugin " << options_.name
                       << ": cannot watch its output: " << ec.message();
      boost::system::error_code ignored;
      stdout_pipe_.close(ignored);
      stderr_pipe_.close(ignored);
    }

    auto self = shared_from_this();
    WaitForLeaderExit();
    ReadStdout();
    ReadStderr();
    start_timer_.expires_after(
        absl::ToChronoNanoseconds(options_.start_timeout));
    start_timer_.async_wait([self](const boost::system::error_code& ec) {
      if (!ec) self->OnStartTimeout();
    });
    handshake_promise_.emplace();
    *handshake = handshake_promise_->get_future();
    return absl::OkStatus();
  }

  // Caller thread, after a failed launch: SIGKILL the group and wait until
  // it is gone and reaped.
  void KillAndReap() {
    auto self = shared_from_this();
    loop_.Post([self] { self->Kill(); });
    if (!WaitForExit(kGroupKillTimeout + kHangGuard)) {
      PLUGD_LOG(ERROR) << "plugin " << options_.name << " (pid " << pid()
                       << ") did not die after SIGKILL";
    }
  }

  // The broker's channel to the announced address: private subchannel, no
  // BDP pings, no retries (PluginProcess::channel()).
  std::shared_ptr<grpc::Channel> BrokerChannel() const {
    grpc::ChannelArguments args;
    // A private subchannel: a shared one may still be backing off from a
    // previous plugin at the same address.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    // Health messages are tiny; BDP pings after each answer woke gRPC's
    // timer threads: with 200 idle plugins, 1271 -> 382 wake-ups/s without.
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    // The broker retries nothing through gRPC; without the retry filter each
    // call (the long-lived health watch above all) carries less state.
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    // No channelz nodes and traces for the channel, its subchannel and
    // socket: nothing here serves channelz, and they are kept per plugin.
    args.SetInt(GRPC_ARG_ENABLE_CHANNELZ, 0);
    SetLocalReconnectArguments(&args);
    args.SetMaxReceiveMessageSize(static_cast<int>(std::min<int64_t>(
        options_.max_message_bytes, std::numeric_limits<int>::max())));
    args.SetMaxSendMessageSize(static_cast<int>(std::min<int64_t>(
        options_.max_message_bytes, std::numeric_limits<int>::max())));
    return grpc::CreateCustomChannel(handshake_.GrpcTarget(),
                                     grpc::InsecureChannelCredentials(), args);
  }

  // Caller thread, after the handshake: connects to the announced address.
  // The channel stays open as the broker's one connection to this instance
  // (channel()): the supervisor's health checks and watch, the version
  // fetch and Control.Shutdown all use it. options().make_channel, when
  // set, makes it instead.
  absl::Status CheckConnectable() {
    std::shared_ptr<grpc::Channel> channel =
        options_.make_channel ? options_.make_channel(handshake_.GrpcTarget())
                              : BrokerChannel();
    absl::Duration remaining = std::max(
        started_ + options_.start_timeout - absl::Now(), kMinConnectDeadline);
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + remaining));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(options_.health_service());
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status;
    {
      // Blocking: the mark lasts the whole call, which starts no other.
      LauncherCallMark mark(&context);
      status = stub->Check(&context, request, &response);
    }
    if (!status.ok() &&
        status.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
      std::string exited;
      if (std::optional<ExitStatus> s = exit_status()) {
        exited = absl::StrCat("; meanwhile it ", s->signaled ? "was " : "",
                              s->ToString());
      }
      std::string what = absl::StrCat("plugin ", options_.name, " announced ",
                                      handshake_.GrpcTarget());
      if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
        return absl::DeadlineExceededError(
            absl::StrCat(what,
                         " but did not answer a health check within its start "
                         "timeout (",
                         absl::FormatDuration(options_.start_timeout), ")",
                         exited, "; last stderr lines: ", LastStderr()));
      }
      return absl::UnavailableError(absl::StrCat(
          what, " but it cannot be connected: ", status.error_message(), exited,
          "; last stderr lines: ", LastStderr()));
    }
    loop_.Run([&] { channel_ = channel; });
    return absl::OkStatus();
  }

  // Caller thread, after the connect check of a go-plugin plugin: points
  // the stable socket_path at the socket the plugin chose, replacing what is
  // there in one rename, so a host connecting to socket_path reaches this
  // instance.
  absl::Status LinkStableSocket() {
    if ((!options_.go_plugin && !options_.run_as) ||
        handshake_.network != "unix" ||
        handshake_.address == options_.socket_path) {
      return absl::OkStatus();
    }
    const std::string& path = options_.socket_path;
    const std::string temp = absl::StrCat(path, ".link");
    ::unlink(temp.c_str());
    if (::symlink(handshake_.address.c_str(), temp.c_str()) != 0 ||
        ::rename(temp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      ::unlink(temp.c_str());
      return ErrnoStatus(
          err, absl::StrCat("plugin ", options_.name, ": cannot link ", path,
                            " to the socket it chose, ", handshake_.address));
    }
    return absl::OkStatus();
  }

  void OnExit(std::function<void(const ExitStatus&)> callback) {
    ExitStatus status;
    {
      absl::MutexLock lock(&mu_);
      if (!exit_status_) {
        on_exit_.push_back(std::move(callback));
        return;
      }
      status = *exit_status_;
    }
    loop_.Post([callback = std::move(callback), status] { callback(status); });
  }

  std::optional<ExitStatus> WaitForExit(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto exited = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return exit_status_.has_value();
    };
    mu_.AwaitWithTimeout(absl::Condition(&exited), timeout);
    return exit_status_;
  }

  // Any thread; `done` runs on the loop.
  void AsyncStop(absl::Duration grace,
                 std::function<void(const ExitStatus&)> done) {
    auto self = shared_from_this();
    loop_.Post([self, grace, done = std::move(done)]() mutable {
      self->StartStop(grace, std::move(done));
    });
  }

  absl::Status Signal(int sig) {
    pid_t pgid;
    {
      absl::MutexLock lock(&mu_);
      if (exit_status_ || pid_ <= 0) return absl::OkStatus();
      pgid = pid_;
    }
    if (::kill(-pgid, sig) != 0 && errno != ESRCH) {
      return ErrnoStatus(
          errno, absl::StrCat("plugin ", options_.name, ": cannot send signal ",
                              sig, " to process group ", pgid));
    }
    return absl::OkStatus();
  }

  Handshake handshake_;  // written by Launch before the object is shared
  // Set on the loop once handshake_ is written (for the exit cleanup).
  bool handshake_known_ = false;

 private:
  // Output is read when a pipe turns readable, into the loop's buffer
  // (EventLoop::ReadBuffer): an idle plugin holds no read buffer of its own.
  void ReadStdout() {
    auto self = shared_from_this();
    stdout_pipe_.async_wait(
        Pipe::wait_read, [self](const boost::system::error_code& ec) {
          self->OnReadable(self->stdout_pipe_, ec, &Impl::ReadStdout,
                           &Impl::OnStdout);
        });
  }

  void ReadStderr() {
    auto self = shared_from_this();
    stderr_pipe_.async_wait(
        Pipe::wait_read, [self](const boost::system::error_code& ec) {
          self->OnReadable(self->stderr_pipe_, ec, &Impl::ReadStderr,
                           &Impl::OnStderr);
        });
  }

  // One read of what `pipe` holds, then `on_data` with it (or with the end
  // of the pipe or the error); `rearm` when the wake-up found nothing.
  void OnReadable(Pipe& pipe, boost::system::error_code ec,
                  void (Impl::*rearm)(),
                  void (Impl::*on_data)(const boost::system::error_code&,
                                        absl::string_view)) {
    absl::Span<char> buffer = loop_.ReadBuffer();
    size_t n = 0;
    if (!ec) {
      // Non-blocking (set at assign): a spurious wake-up is would_block.
      n = pipe.read_some(asio::buffer(buffer.data(), buffer.size()), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again ||
          ec == asio::error::interrupted) {
        (this->*rearm)();
        return;
      }
    }
    (this->*on_data)(ec, absl::string_view(buffer.data(), n));
  }

  void OnStdout(const boost::system::error_code& ec, absl::string_view data) {
    auto emit = [this](absl::string_view text, bool truncated) {
      if (!handshake_line_seen_) {
        handshake_line_seen_ = true;
        OnHandshakeLine(text, truncated);
      } else {
        AddLine(OutputStream::kStdout, text, truncated);
      }
    };
    if (!data.empty()) {
      if (!handshake_line_seen_ &&
          early_stdout_.size() < kMaxEarlyStdoutBytes) {
        absl::string_view head =
            data.substr(0, kMaxEarlyStdoutBytes - early_stdout_.size());
        early_stdout_.append(head.data(), head.size());
      }
      stdout_lines_.Feed(data, emit);
    }
    if (ec) {
      stdout_lines_.Flush(emit);
      stdout_eof_ = true;
      boost::system::error_code ignored;
      stdout_pipe_.close(ignored);
      MaybeFailEarlyExit();
      return;
    }
    ReadStdout();
  }

  void OnStderr(const boost::system::error_code& ec, absl::string_view data) {
    auto emit = [this](absl::string_view text, bool truncated) {
      AddLine(OutputStream::kStderr, text, truncated);
    };
    if (!data.empty()) stderr_lines_.Feed(data, emit);
    if (ec) {
      stderr_lines_.Flush(emit);
      stderr_eof_ = true;
      boost::system::error_code ignored;
      stderr_pipe_.close(ignored);
      MaybeFailEarlyExit();
      return;
    }
    ReadStderr();
  }

  void AddLine(OutputStream stream, absl::string_view text, bool truncated) {
    OutputLine line;
    line.time = absl::Now();
    line.stream = stream;
    line.level = DetectLevel(text, log::Level::kInfo);
    line.text = std::string(text);
    line.truncated = truncated;
    output_.Add(std::move(line));
  }

  // The last stderr lines, quoted, for error messages.
  std::string LastStderr() const {
    std::vector<OutputLine> lines = output_.Tail();
    std::vector<std::string> quoted;
    for (auto it = lines.rbegin();
         it != lines.rend() && quoted.size() < kErrorStderrLines; ++it) {
      if (it->stream == OutputStream::kStderr) {
        quoted.push_back(Quote(it->text, 200));
      }
    }
    if (quoted.empty()) return "(none)";
    std::reverse(quoted.begin(), quoted.end());
    return absl::StrJoin(quoted, ", ");
  }

  void ResolveHandshake(absl::StatusOr<Handshake> result) {
    if (!handshake_promise_) return;
    start_timer_.cancel();
    drain_timer_.cancel();
    handshake_promise_->set_value(std::move(result));
    handshake_promise_.reset();
  }

  void OnHandshakeLine(absl::string_view line, bool truncated) {
    if (!handshake_promise_) return;
    const std::string& name = options_.name;
    const char* kind =
        options_.go_plugin ? "a go-plugin plugin using gRPC" : "a plugd plugin";
    absl::StatusOr<Handshake> parsed = ParseHandshake(line);
    if (!parsed.ok() || truncated) {
      if (parsed.status().code() == absl::StatusCode::kFailedPrecondition) {
        return ResolveHandshake(absl::FailedPreconditionError(
            absl::StrCat("plugin ", name, ": ", parsed.status().message())));
      }
      std::string why =
          truncated ? absl::StrCat("the line is longer than ",
                                   options_.output.max_line_bytes, " bytes")
                    : std::string(parsed.status().message());
      return ResolveHandshake(absl::UnknownError(
          absl::StrCat("plugin ", name, " printed ", Quote(line),
                       " instead of a handshake line (", why, "); is it ", kind,
                       "? last stderr lines: ", LastStderr())));
    }
    const Handshake& h = *parsed;
    if (h.core_version != kCoreProtocolVersion) {
      return ResolveHandshake(absl::FailedPreconditionError(
          absl::StrCat("plugin ", name, " speaks core protocol version ",
                       h.core_version, ", this launcher speaks version ",
                       kCoreProtocolVersion, " (handshake ", Quote(line),
                       "); rebuild the plugin against a "
                       "matching plugd/go-plugin")));
    }
    if (std::find(options_.protocol_versions.begin(),
                  options_.protocol_versions.end(),
                  h.app_version) == options_.protocol_versions.end()) {
      return ResolveHandshake(absl::FailedPreconditionError(absl::StrCat(
          "plugin ", name, " chose app protocol version ", h.app_version,
          " but the host supports [",
          FormatVersionList(options_.protocol_versions), "] (handshake ",
          Quote(line), "); upgrade whichever side is older")));
    }
    if (h.network == "unix" && h.address != options_.socket_path &&
        !options_.go_plugin &&
        (!options_.run_as ||
         h.address != absl::StrCat(run_dir_, "/", kRunDirSocketName))) {
      PLUGD_LOG(INFO) << "plugin " << name << " listens on " << h.address
                      << " instead of " << options_.socket_path;
    }
    ResolveHandshake(h);
  }

  void OnStartTimeout() {
    if (!handshake_promise_) return;
    ResolveHandshake(absl::DeadlineExceededError(
        absl::StrCat("plugin ", options_.name, " printed no handshake within ",
                     absl::FormatDuration(options_.start_timeout),
                     "; killed it; stdout so far: ",
                     early_stdout_.empty() ? "(none)" : Quote(early_stdout_),
                     "; stderr so far: ", LastStderr())));
    Kill();
  }

  void MaybeFailEarlyExit() {
    if (!handshake_promise_ || !exited_) return;
    if (!(stdout_eof_ && stderr_eof_) && !drain_expired_) return;
    std::string stderr_lines = LastStderr();
    std::string hint;
    if (options_.go_plugin &&
        absl::StrContains(stderr_lines, kGoPluginCookieRefusal)) {
      hint = absl::StrCat(
          "; go-plugin refused the magic cookie ",
          options_.go_plugin->magic_cookie_key, "=",
          Quote(options_.go_plugin->magic_cookie_value),
          ": set go_plugin magic_cookie_key and magic_cookie_value to the "
          "plugin's HandshakeConfig");
    }
    ResolveHandshake(absl::UnknownError(absl::StrCat(
        "plugin ", options_.name, " ", leader_status_.ToString(),
        " before its handshake; last stderr lines: ", stderr_lines, hint)));
  }

  void Kill() {
    if (leader_exited_) return;
    if (stop_phase_ < StopPhase::kKillSent) stop_phase_ = StopPhase::kKillSent;
    stop_timer_.cancel();
    ::kill(-pid(), SIGKILL);
  }

  // Loop thread. Waits, on the reactor, for the leader's pidfd to become
  // readable (the leader exited).
  void WaitForLeaderExit() {
    auto self = shared_from_this();
    exit_fd_.async_wait(asio::posix::descriptor_base::wait_read,
                        [self](const boost::system::error_code& ec) {
                          self->OnExitFdReady(ec);
                        });
  }

  // The pidfd was reported readable. That is only a hint: Asio may deliver a
  // readiness that belonged to an earlier descriptor. When a pidfd is closed
  // while an event for it (e.g. the EPOLLHUP a pidfd reports once its process
  // is reaped) is still queued, and the next descriptor reuses the reactor's
  // per-descriptor state (its object pool hands the freed one back), that
  // stale event completes a wait on the new descriptor. So the exit is
  // confirmed with a non-blocking waitpid(), and the wait re-armed if the
  // leader still runs: the loop thread never blocks on a live process.
  void OnExitFdReady(const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || leader_exited_) return;
    const pid_t leader = pid();
    int wait_status = 0;
    pid_t reaped;
    do {
      reaped = ::waitpid(leader, &wait_status, WNOHANG);
    } while (reaped < 0 && errno == EINTR);
    const int wait_errno = errno;
    if (reaped == 0) {
      if (!ec) return WaitForLeaderExit();  // a stale readiness: not exited
      // The reactor cannot watch the pidfd: kill the plugin rather than lose
      // track of it; its status is not known.
      PLUGD_LOG(ERROR) << "plugin " << options_.name << " (pid " << leader
                       << "): cannot wait for its exit: " << ec.message()
                       << "; killed it";
      ::kill(-leader, SIGKILL);
      return OnLeaderExit(ExitStatus{false, -1, 0, false});
    }
    if (reaped == leader) {
      OnLeaderExit(ExitStatus::FromWaitStatus(wait_status));
      return;
    }
    // ECHILD: someone else reaped it (a host with SIGCHLD ignored, or a
    // waitpid(-1) elsewhere), the status is lost.
    PLUGD_LOG(WARNING) << "plugin " << options_.name << " (pid " << leader
                       << ") exited but its status could not be collected: "
                       << strerror(wait_errno);
    OnLeaderExit(ExitStatus{false, -1, 0, false});
  }

  void OnLeaderExit(ExitStatus status) {
    leader_exited_ = true;
    leader_status_ = status;
    stop_timer_.cancel();
    boost::system::error_code ignored;
    exit_fd_.close(ignored);
    auto self = shared_from_this();
    internal::AsyncKillProcessGroup(
        loop_.context(), pid(), kGroupKillTimeout,
        [self](absl::Status status) { self->OnGroupGone(std::move(status)); });
  }

  void OnGroupGone(absl::Status status) {
    if (!status.ok()) {
      PLUGD_LOG(ERROR) << "plugin " << options_.name << ": "
                       << status.message();
    }
    absl::Status removed = RemoveStaleSocket(options_.socket_path);
    // A go-plugin plugin killed before it could remove the socket it chose:
    // remove it too, when it is in our directory.
    if (removed.ok() && options_.go_plugin && handshake_known_ &&
        handshake_.network == "unix" &&
        DirName(handshake_.address) == DirName(options_.socket_path)) {
      removed = RemoveStaleSocket(handshake_.address);
    }
    if (!removed.ok()) {
      PLUGD_LOG(WARNING) << "plugin " << options_.name << ": "
                         << removed.message();
    }
    // A run-as plugin's own socket directory, with the socket it chose.
    RemoveRunDir(run_dir_, handshake_known_ && handshake_.network == "unix"
                               ? handshake_.address
                               : "");
    run_dir_.clear();
    exited_ = true;
    std::vector<std::function<void(const ExitStatus&)>> callbacks;
    {
      absl::MutexLock lock(&mu_);
      exit_status_ = leader_status_;
      callbacks.swap(on_exit_);
    }
    PLUGD_LOG(DEBUG) << "plugin " << options_.name << " (pid " << pid() << ") "
                     << leader_status_.ToString();
    for (auto& callback : callbacks) callback(leader_status_);
    MaybeFinishStop();
    if (handshake_promise_) {
      auto self = shared_from_this();
      drain_timer_.expires_after(absl::ToChronoNanoseconds(kDrainAfterExit));
      drain_timer_.async_wait([self](const boost::system::error_code& ec) {
        if (ec) return;
        self->drain_expired_ = true;
        self->MaybeFailEarlyExit();
      });
      MaybeFailEarlyExit();
    }
  }

  void StartStop(absl::Duration grace,
                 std::function<void(const ExitStatus&)> done) {
    if (done) stop_waiters_.push_back(std::move(done));
    if (exited_) return MaybeFinishStop();
    if (stop_phase_ != StopPhase::kNone || leader_exited_) return;
    stop_grace_ = grace;
    if (channel_ == nullptr) return SendTerm();

    stop_phase_ = StopPhase::kShutdownSent;
    if (options_.go_plugin) return SendGoPluginShutdown(grace);
    struct Call {
      grpc::ClientContext context;
      v1::ShutdownRequest request;
      v1::ShutdownResponse response;
      std::unique_ptr<v1::Control::Stub> stub;
    };
    auto call = std::make_shared<Call>();
    call->stub = v1::Control::NewStub(channel_);
    call->request.set_reason("stop requested by the launcher");
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + grace));
    shutdown_rpc_pending_ = true;
    auto self = shared_from_this();
    LauncherCallMark mark(&call->context);
    call->stub->async()->Shutdown(
        &call->context, &call->request, &call->response,
        [self, call](const grpc::Status& status) {
          // A gRPC thread: hand the result to the loop.
          self->loop_.Post([self, status] { self->OnShutdownReply(status); });
        });
    ArmStopTimer([self] { self->SendTerm(); });
  }

  // go-plugin's plugin.GRPCController/Shutdown. go-plugin's own server stops
  // (grpc.Server.Stop) inside the call, so the call usually ends UNAVAILABLE
  // although the plugin is on its way out: only UNIMPLEMENTED (no controller)
  // moves on to SIGTERM at once; otherwise the plugin has its grace period.
  void SendGoPluginShutdown(absl::Duration grace) {
    struct Call {
      grpc::ClientContext context;
      ::plugin::Empty request;
      ::plugin::Empty response;
      std::unique_ptr<::plugin::GRPCController::Stub> stub;
    };
    auto call = std::make_shared<Call>();
    call->stub = ::plugin::GRPCController::NewStub(channel_);
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + grace));
    shutdown_rpc_pending_ = true;
    auto self = shared_from_this();
    LauncherCallMark mark(&call->context);
    call->stub->async()->Shutdown(
        &call->context, &call->request, &call->response,
        [self, call](const grpc::Status& status) {
          self->loop_.Post([self, status] {
            self->OnShutdownReply(status.error_code() ==
                                          grpc::StatusCode::UNIMPLEMENTED
                                      ? status
                                      : grpc::Status::OK);
          });
        });
    ArmStopTimer([self] { self->SendTerm(); });
  }

  void OnShutdownReply(const grpc::Status& status) {
    shutdown_rpc_pending_ = false;
    if (!status.ok() && stop_phase_ == StopPhase::kShutdownSent &&
        !leader_exited_) {
      // No graceful path (not a plugd plugin, or it is wedged): go on now.
      PLUGD_LOG(DEBUG) << "plugin " << options_.name
                       << ": Control.Shutdown failed ("
                       << status.error_message() << "); sending SIGTERM";
      SendTerm();
    }
    MaybeFinishStop();
  }

  void SendTerm() {
    if (leader_exited_ || stop_phase_ >= StopPhase::kTermSent) return;
    stop_phase_ = StopPhase::kTermSent;
    ::kill(-pid(), SIGTERM);
    auto self = shared_from_this();
    ArmStopTimer([self] { self->SendKill(); });
  }

  void SendKill() {
    if (leader_exited_) return;
    PLUGD_LOG(WARNING) << "plugin " << options_.name
                       << " did not stop within its grace period of "
                       << absl::FormatDuration(stop_grace_)
                       << " after SIGTERM; sending SIGKILL";
    Kill();
  }

  void ArmStopTimer(std::function<void()> then) {
    stop_timer_.expires_after(absl::ToChronoNanoseconds(stop_grace_));
    stop_timer_.async_wait(
        [then = std::move(then)](const boost::system::error_code& ec) {
          if (!ec) then();
        });
  }

  void MaybeFinishStop() {
    if (!exited_ || shutdown_rpc_pending_) return;
    auto waiters = std::move(stop_waiters_);
    stop_waiters_.clear();
    for (auto& waiter : waiters) waiter(leader_status_);
  }

  enum class StopPhase {
    kNone = 0,
    kShutdownSent = 1,
    kTermSent = 2,
    kKillSent = 3
  };

  EventLoop& loop_;
  const LaunchOptions options_;
  const std::string executable_;
  // The pinned executable's descriptor, until the spawn; -1 without a pin.
  VerifiedExecutable verified_;
  // A run-as plugin's socket directory (MakeRunDir); empty otherwise.
  std::string run_dir_;
  OutputCapture output_;

  // Loop thread only.
  Pipe stdout_pipe_;
  Pipe stderr_pipe_;
  LineSplitter stdout_lines_;
  LineSplitter stderr_lines_;
  asio::steady_timer start_timer_;
  asio::steady_timer drain_timer_;
  asio::steady_timer stop_timer_;
  asio::posix::stream_descriptor exit_fd_;  // the leader's pidfd
  absl::Time started_;  // written by Spawn before Launch reads it
  bool stdout_eof_ = false;
  bool stderr_eof_ = false;
  bool handshake_line_seen_ = false;
  std::string early_stdout_;
  std::optional<std::promise<absl::StatusOr<Handshake>>> handshake_promise_;
  bool leader_exited_ = false;  // reaped
  bool exited_ = false;         // reaped and its group gone
  bool drain_expired_ = false;
  ExitStatus leader_status_;
  StopPhase stop_phase_ = StopPhase::kNone;
  absl::Duration stop_grace_;
  bool shutdown_rpc_pending_ = false;
  std::vector<std::function<void(const ExitStatus&)>> stop_waiters_;
  std::shared_ptr<grpc::Channel> channel_;

  mutable absl::Mutex mu_;
  pid_t pid_ ABSL_GUARDED_BY(mu_) = -1;
  std::optional<ExitStatus> exit_status_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void(const ExitStatus&)>> on_exit_
      ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------
// PluginProcess

absl::StatusOr<std::shared_ptr<PluginProcess>> PluginProcess::Launch(
    EventLoop& loop, LaunchOptions options) {
  if (loop.InLoopThread()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "plugin ", options.name,
        ": Launch() blocks and must not be called on the event loop thread"));
  }
  PLUGD_RETURN_IF_ERROR(ValidateOptions(options));
  PLUGD_ASSIGN_OR_RETURN(std::string executable, ResolveExecutable(options));
  PLUGD_RETURN_IF_ERROR(Annotate(PrepareSocketPath(options.socket_path),
                                 absl::StrCat("plugin ", options.name)));
  // Hashed here, on the caller's thread (a large binary takes a while), and
  // executed by descriptor in the child.
  VerifiedExecutable verified;
  if (!options.executable_sha256.empty()) {
    PLUGD_ASSIGN_OR_RETURN(verified,
                           OpenVerifiedExecutable(options, executable));
  }
  std::string run_dir;
  if (options.run_as) {
    absl::StatusOr<std::string> made = MakeRunDir(options);
    if (!made.ok()) {
      if (verified.fd >= 0) ::close(verified.fd);
      return made.status();
    }
    run_dir = *std::move(made);
  }

  const absl::Duration start_timeout = options.start_timeout;
  auto impl =
      std::make_shared<Impl>(loop, std::move(options), std::move(executable),
                             verified, std::move(run_dir));
  if (internal::AfterExecutableVerifiedHook()) {
    internal::AfterExecutableVerifiedHook()(impl->options());
  }
  std::future<absl::StatusOr<Handshake>> handshake;
  PLUGD_RETURN_IF_ERROR(loop.Run([&] { return impl->Spawn(&handshake); }));

  // A failed start: the process is killed if still there, and the status
  // names it (kStartProcessPayload); with how it ended once it had
  // announced its address, as clients may have reached it by then.
  auto fail = [&impl](absl::Status status, bool announced) {
    const pid_t pid = impl->pid();
    impl->KillAndReap();
    if (pid > 0) {
      SetStartProcess(pid, announced ? impl->exit_status() : std::nullopt,
                      &status);
    }
    return status;
  };
  if (handshake.wait_for(absl::ToChronoNanoseconds(
          start_timeout + kHangGuard)) != std::future_status::ready) {
    return fail(absl::DeadlineExceededError(absl::StrCat(
                    "plugin ", impl->options().name,
                    ": the launcher got no handshake result (event loop "
                    "stalled?); killed it")),
                /*announced=*/false);
  }
  absl::StatusOr<Handshake> result = handshake.get();
  if (!result.ok()) return fail(result.status(), /*announced=*/false);
  impl->handshake_ = *std::move(result);
  loop.Run([&] { impl->handshake_known_ = true; });
  absl::Status connected = impl->CheckConnectable();
  if (connected.ok()) connected = impl->LinkStableSocket();
  if (!connected.ok()) return fail(std::move(connected), /*announced=*/true);
  PLUGD_LOG(DEBUG) << "plugin " << impl->options().name << " started (pid "
                   << impl->pid() << ") at " << impl->handshake().GrpcTarget();
  return std::shared_ptr<PluginProcess>(new PluginProcess(std::move(impl)));
}

void PluginProcess::AsyncLaunch(
    EventLoop& loop, LaunchOptions options,
    std::function<void(absl::StatusOr<std::shared_ptr<PluginProcess>>)> done) {
  // The blocking part (waiting for the handshake, the connect check) runs on
  // a short-lived thread of its own; the fork itself still happens on the
  // loop thread (Launch posts it there), which owns the child.
  std::thread([&loop, options = std::move(options),
               done = std::move(done)]() mutable {
    auto result =
        std::make_shared<absl::StatusOr<std::shared_ptr<PluginProcess>>>(
            Launch(loop, std::move(options)));
    loop.Post([result, done = std::move(done)] { done(std::move(*result)); });
  }).detach();
}

PluginProcess::PluginProcess(std::shared_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

PluginProcess::~PluginProcess() {
  if (!impl_) return;
  if (impl_->loop().InLoopThread()) {
    // Cannot block here; the stop goes on, holding the Impl alive.
    if (!impl_->exit_status()) {
      impl_->AsyncStop(impl_->options().stop_grace, nullptr);
    }
  } else {
    // Also when it has exited: waits for a Shutdown call still in flight, so
    // nothing is posted to the loop after the last PluginProcess is gone.
    Stop();
  }
}

const std::string& PluginProcess::name() const { return impl_->options().name; }
const LaunchOptions& PluginProcess::options() const { return impl_->options(); }
pid_t PluginProcess::pid() const { return impl_->pid(); }
const Handshake& PluginProcess::handshake() const { return impl_->handshake(); }
std::shared_ptr<grpc::Channel> PluginProcess::channel() const {
  return impl_->channel();
}
OutputCapture& PluginProcess::output() { return impl_->output(); }
bool PluginProcess::running() const { return !impl_->exit_status(); }
std::optional<ExitStatus> PluginProcess::exit_status() const {
  return impl_->exit_status();
}

void PluginProcess::OnExit(std::function<void(const ExitStatus&)> callback) {
  impl_->OnExit(std::move(callback));
}

std::optional<ExitStatus> PluginProcess::WaitForExit(absl::Duration timeout) {
  return impl_->WaitForExit(timeout);
}

ExitStatus PluginProcess::Stop(std::optional<absl::Duration> grace) {
  const absl::Duration g = grace.value_or(impl_->options().stop_grace);
  if (impl_->loop().InLoopThread()) {
    PLUGD_LOG(ERROR) << "plugin " << name()
                     << ": Stop() called on the event loop thread would "
                        "deadlock; stopping asynchronously instead";
    impl_->AsyncStop(g, nullptr);
    return impl_->exit_status().value_or(ExitStatus{false, -1, 0, false});
  }
  auto done = std::make_shared<std::promise<ExitStatus>>();
  std::future<ExitStatus> result = done->get_future();
  impl_->AsyncStop(g, [done](const ExitStatus& s) { done->set_value(s); });
  if (result.wait_for(
          absl::ToChronoNanoseconds(2 * g + kGroupKillTimeout + kHangGuard)) !=
      std::future_status::ready) {
    PLUGD_LOG(ERROR) << "plugin " << name() << " (pid " << pid()
                     << ") did not stop (unkillable?)";
    return ExitStatus{false, -1, 0, false};
  }
  return result.get();
}

void PluginProcess::AsyncStop(std::optional<absl::Duration> grace,
                              std::function<void(const ExitStatus&)> done) {
  impl_->AsyncStop(grace.value_or(impl_->options().stop_grace),
                   std::move(done));
}

absl::Status PluginProcess::Signal(int signal) { return impl_->Signal(signal); }

bool IsLauncherCall(const grpc::ClientContext* context) {
  return LauncherCalls::Get().Contains(context);
}

}  // namespace plugd::broker
