// Starting children with clone(CLONE_VM | CLONE_VFORK): what the child may
// see of its parent, and what it must not do to it.
#include "plugd/broker/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace plugd::broker::internal {
namespace {

volatile sig_atomic_t usr1_handled = 0;
void OnUsr1(int) { usr1_handled = 1; }

// Installs `handler` for `sig` for the test's duration.
class ScopedSignal {
 public:
  ScopedSignal(int sig, void (*handler)(int)) : sig_(sig) {
    struct sigaction action;
    std::memset(&action, 0, sizeof(action));
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    sigaction(sig_, &action, &old_);
  }
  ~ScopedSignal() { sigaction(sig_, &old_, nullptr); }

 private:
  int sig_;
  struct sigaction old_;
};

int WaitStatus(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

TEST(CloneVforkTest, ACaughtSignalIsDefaultInTheChildAndStaysCaughtHere) {
  ScopedSignal usr1(SIGUSR1, &OnUsr1);
  ScopedSignal usr2(SIGUSR2, SIG_IGN);
  usr1_handled = 0;
  struct Seen {
    bool usr1_default = false;
    bool usr2_ignored = false;
    bool usr1_blocked = false;
    bool glibc_internal_blocked = false;
  } seen;
  const pid_t pid = CloneVfork(
      [](void* p) -> int {
        auto* s = static_cast<Seen*>(p);
        struct sigaction action;
        sigaction(SIGUSR1, nullptr, &action);
        s->usr1_default = action.sa_handler == SIG_DFL;
        sigaction(SIGUSR2, nullptr, &action);
        s->usr2_ignored = action.sa_handler == SIG_IGN;
        sigset_t mask;
        sigprocmask(SIG_SETMASK, nullptr, &mask);
        s->usr1_blocked = sigismember(&mask, SIGUSR1) == 1;
        // glibc's own signals (32 and 33), which sigprocmask hides.
        uint64_t raw = 0;
        syscall(SYS_rt_sigprocmask, SIG_BLOCK, nullptr, &raw, sizeof(raw));
        s->glibc_internal_blocked =
            (raw >> 31 & 1) != 0 && (raw >> 32 & 1) != 0;
        // Delivered once unblocked: the default action ends the child. Had
        // the parent's handler stayed, it would run here, on the parent's
        // memory, and set the parent's flag.
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        raise(SIGUSR1);
        _exit(3);
      },
      &seen);
  ASSERT_GT(pid, 0) << std::strerror(errno);
  // The child has ended when CloneVfork returns: what it wrote is here.
  EXPECT_TRUE(seen.usr1_default);
  EXPECT_TRUE(seen.usr2_ignored);
  EXPECT_TRUE(seen.usr1_blocked);
  EXPECT_TRUE(seen.glibc_internal_blocked);
  const int status = WaitStatus(pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGUSR1);
  EXPECT_EQ(usr1_handled, 0);

  // This thread's mask is back and the handler still ours.
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  EXPECT_EQ(sigismember(&mask, SIGUSR1), 0);
  raise(SIGUSR1);
  EXPECT_EQ(usr1_handled, 1);
}

TEST(CloneVforkTest, ReturnsOnceTheChildHasExecutedOrFailedTo) {
  struct Exec {
    const char* path;
    bool before_exec = false;
    int exec_errno = 0;
  };
  // A program that exits 7: CloneVfork returned after the exec, and the
  // child's write before it is visible here.
  Exec good{"/bin/sh"};
  const pid_t pid = CloneVfork(
      [](void* p) -> int {
        auto* e = static_cast<Exec*>(p);
        e->before_exec = true;
        char* const argv[] = {const_cast<char*>("sh"), const_cast<char*>("-c"),
                              const_cast<char*>("exit 7"), nullptr};
        char* const envp[] = {nullptr};
        execve(e->path, argv, envp);
        e->exec_errno = errno;
        _exit(127);
      },
      &good);
  ASSERT_GT(pid, 0) << std::strerror(errno);
  EXPECT_TRUE(good.before_exec);
  EXPECT_EQ(good.exec_errno, 0);
  int status = WaitStatus(pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 7);

  // A program that stays: when CloneVfork returns, the child is already
  // that program (with fork alone it could still be a copy of this one).
  Exec sleeper{"/bin/sleep"};
  const pid_t sleeping = CloneVfork(
      [](void* p) -> int {
        auto* e = static_cast<Exec*>(p);
        char* const argv[] = {const_cast<char*>(e->path),
                              const_cast<char*>("30"), nullptr};
        char* const envp[] = {nullptr};
        execve(e->path, argv, envp);
        _exit(127);
      },
      &sleeper);
  ASSERT_GT(sleeping, 0) << std::strerror(errno);
  // (/proc/PID/exe is switched before the parent is released; the command
  // line is filled in just after.)
  std::error_code error;
  const std::filesystem::path exe = std::filesystem::read_symlink(
      absl::StrCat("/proc/", sleeping, "/exe"), error);
  kill(sleeping, SIGKILL);
  WaitStatus(sleeping);
  ASSERT_FALSE(error) << error.message();
  EXPECT_EQ(exe, std::filesystem::canonical("/bin/sleep"));

  // A missing program: the child's errno reaches the parent.
  Exec missing{"/nonexistent/plugd-spawn-test"};
  const pid_t failed = CloneVfork(
      [](void* p) -> int {
        auto* e = static_cast<Exec*>(p);
        char* const argv[] = {const_cast<char*>(e->path), nullptr};
        char* const envp[] = {nullptr};
        execve(e->path, argv, envp);
        e->exec_errno = errno;
        _exit(127);
      },
      &missing);
  ASSERT_GT(failed, 0) << std::strerror(errno);
  EXPECT_EQ(missing.exec_errno, ENOENT);
  status = WaitStatus(failed);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 127);
}

TEST(CloneVforkTest, AChildThatChangesItsUserGetsACopyOfTheMemory) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to change the user";
  struct Child {
    bool wrote = false;
  };
  auto become_nobody = [](void* p) -> int {
    static_cast<Child*>(p)->wrote = true;
    if (syscall(SYS_setresuid, 65534, 65534, 65534) != 0) _exit(1);
    _exit(0);
  };
  ASSERT_EQ(prctl(PR_GET_DUMPABLE), 1);
  // Shared: the kernel marks the (shared) memory map not dumpable when the
  // child's credentials change, and this process with it. Why the launcher
  // uses kCopied for run_as.
  Child shared;
  pid_t pid = CloneVfork(become_nobody, &shared, ChildMemory::kShared);
  ASSERT_GT(pid, 0) << std::strerror(errno);
  int status = WaitStatus(pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(shared.wrote);
  EXPECT_EQ(prctl(PR_GET_DUMPABLE), 0);
  ASSERT_EQ(prctl(PR_SET_DUMPABLE, 1), 0);

  Child copied;
  pid = CloneVfork(become_nobody, &copied, ChildMemory::kCopied);
  ASSERT_GT(pid, 0) << std::strerror(errno);
  status = WaitStatus(pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(copied.wrote);  // its own copy
  EXPECT_EQ(prctl(PR_GET_DUMPABLE), 1);
}

TEST(CloneVforkTest, ACopiedChildWritesItsOwnMemory) {
  struct Child {
    int value = 0;
  } child;
  const pid_t pid = CloneVfork(
      [](void* p) -> int {
        static_cast<Child*>(p)->value = 42;
        _exit(static_cast<Child*>(p)->value);
      },
      &child, ChildMemory::kCopied);
  ASSERT_GT(pid, 0) << std::strerror(errno);
  const int status = WaitStatus(pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 42);  // it saw its own write
  EXPECT_EQ(child.value, 0);           // this process did not
}

// An initializer as the launcher's: prepares the child, or fails a step.
struct TestInit {
  int fail_with = 0;
  int stdout_fd = -1;
  bp::error_code on_exec_setup(bp::posix::default_launcher&,
                               const bp::filesystem::path&,
                               const char* const*) {
    if (fail_with != 0) return bp::error_code(fail_with, bp::system_category());
    if (stdout_fd >= 0) dup2(stdout_fd, STDOUT_FILENO);
    return bp::error_code();
  }
};

TEST(VforkLauncherTest, StartsTheProgramWithItsArgumentsAndEnvironment) {
  boost::asio::io_context context;
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  TestInit init;
  init.stdout_fd = out[1];
  std::string var = "PLUGD_SPAWN_TEST=from-the-launcher";
  const char* envp[] = {var.c_str(), nullptr};
  VforkLauncher launcher;
  launcher.env = envp;
  bp::error_code ec;
  std::vector<std::string> args = {"-c", "echo \"$0 $1 $PLUGD_SPAWN_TEST\"",
                                   "zero", "one"};
  auto process = launcher(context.get_executor(), ec,
                          bp::filesystem::path("/bin/sh"), args, init);
  close(out[1]);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_GT(process.id(), 0);
  EXPECT_EQ(process.id(), launcher.pid);
  std::string text;
  char buffer[256];
  ssize_t n;
  while ((n = read(out[0], buffer, sizeof(buffer))) > 0) text.append(buffer, n);
  close(out[0]);
  EXPECT_EQ(text, "zero one from-the-launcher\n");
  EXPECT_EQ(process.wait(), 0);
}

TEST(VforkLauncherTest, AFailedStepGivesItsErrnoAndTheChildToReap) {
  boost::asio::io_context context;
  std::vector<std::string> args;
  // Shared memory reports the errno in memory, a copy over a pipe.
  for (ChildMemory memory : {ChildMemory::kShared, ChildMemory::kCopied}) {
    SCOPED_TRACE(memory == ChildMemory::kShared ? "shared" : "copied");
    struct Case {
      int fail_with;       // the initializer's step fails with this
      const char* path;    // what is executed
      int expected_errno;  // 0: started
    };
    for (const Case& c : {Case{EPERM, "/bin/true", EPERM},
                          Case{0, "/nonexistent/plugd-spawn-test", ENOENT},
                          Case{0, "/bin/true", 0}}) {
      SCOPED_TRACE(c.path);
      TestInit init;
      init.fail_with = c.fail_with;
      VforkLauncher launcher;
      launcher.memory = memory;
      bp::error_code ec;
      auto process = launcher(context.get_executor(), ec,
                              bp::filesystem::path(c.path), args, init);
      ASSERT_GT(launcher.pid, 0);
      if (c.expected_errno == 0) {
        ASSERT_FALSE(ec) << ec.message();
        EXPECT_EQ(process.wait(), 0);
        continue;
      }
      EXPECT_EQ(ec.value(), c.expected_errno);
      EXPECT_FALSE(process.is_open());
      // The child has exited, and is left to reap.
      const int status = WaitStatus(launcher.pid);
      ASSERT_TRUE(WIFEXITED(status));
      EXPECT_EQ(WEXITSTATUS(status), 127);
    }
  }
}

}  // namespace
}  // namespace plugd::broker::internal
