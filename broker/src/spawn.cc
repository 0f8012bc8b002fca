#include "plugd/broker/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

namespace plugd::broker::internal {
namespace {

// The child's stack: what it runs before exec is a few frames of
// async-signal-safe calls. Pages are only touched as used.
constexpr size_t kChildStackBytes = size_t{256} * 1024;

struct Trampoline {
  int (*child)(void*);
  void* arg;
};

// The kernel's struct sigaction (x86-64 and the other 64-bit ABIs without
// sa_restorer quirks), for the signals glibc's sigaction() refuses.
struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  uint64_t mask;
};

// The kernel's signal-set size (_NSIG / 8), not glibc's sigset_t.
constexpr size_t kKernelSigsetBytes = sizeof(uint64_t);

int RunChild(void* p) {
  const Trampoline* t = static_cast<const Trampoline*>(p);
  // Every signal is blocked (inherited from the parent's thread). A caught
  // signal's handler would run here, on memory shared with the parent: reset
  // each to its default action before anything can unblock them. Ignored
  // signals stay ignored, as across fork and exec. Raw system calls, so
  // glibc's internal signals (SIGRTMIN-2 and -1, which its sigaction()
  // refuses) are reset too, and nothing of glibc's state is touched.
  for (int sig = 1; sig < 65; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    KernelSigaction action{};
    if (::syscall(SYS_rt_sigaction, sig, nullptr, &action,
                  kKernelSigsetBytes) != 0) {
      continue;
    }
    if (action.handler == SIG_DFL || action.handler == SIG_IGN) continue;
    KernelSigaction reset{};
    reset.handler = SIG_DFL;
    ::syscall(SYS_rt_sigaction, sig, &reset, nullptr, kKernelSigsetBytes);
  }
  return t->child(t->arg);
}

}  // namespace

pid_t CloneVfork(int (*child)(void*), void* arg, ChildMemory memory) {
  const long page = ::sysconf(_SC_PAGESIZE);
  const size_t guard = page > 0 ? static_cast<size_t>(page) : 4096;
  void* stack =
      ::mmap(nullptr, kChildStackBytes + guard, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  if (stack == MAP_FAILED) return -1;
  // The lowest page faults instead of running into whatever lies below.
  if (::mprotect(stack, guard, PROT_NONE) != 0) {
    const int err = errno;
    ::munmap(stack, kChildStackBytes + guard);
    errno = err;
    return -1;
  }
  char* top = static_cast<char*>(stack) + guard + kChildStackBytes;

  // Raw: pthread_sigmask leaves glibc's internal signals unblocked.
  uint64_t all = ~uint64_t{0};
  uint64_t old = 0;
  ::syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, &old, kKernelSigsetBytes);
  Trampoline trampoline{child, arg};
  // CLONE_VFORK: this thread resumes when the child has exec'd or exited, so
  // the stack and everything `arg` points to outlive the child's use of them.
  const int flags =
      (memory == ChildMemory::kShared ? CLONE_VM : 0) | CLONE_VFORK | SIGCHLD;
  const pid_t pid = ::clone(&RunChild, top, flags, &trampoline);
  const int clone_errno = errno;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, nullptr, kKernelSigsetBytes);
  ::munmap(stack, kChildStackBytes + guard);
  errno = clone_errno;
  return pid;
}

void ChildWrite(int fd, const void* data, size_t size) {
  ::syscall(SYS_write, fd, data, size);
}

int MakePipeAboveStderr(int fds[2], int flags) {
  if (::pipe2(fds, flags) != 0) {
    const int err = errno;
    fds[0] = fds[1] = -1;
    return err;
  }
  for (int i = 0; i < 2; ++i) {
    if (fds[i] <= STDERR_FILENO) {
      const int moved = ::fcntl(fds[i], F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
      ::close(fds[i]);
      fds[i] = moved;
    }
  }
  if (fds[0] < 0 || fds[1] < 0) {
    const int err = errno;
    if (fds[0] >= 0) ::close(fds[0]);
    if (fds[1] >= 0) ::close(fds[1]);
    fds[0] = fds[1] = -1;
    return err;
  }
  return 0;
}

int ReadChildError(int fd) {
  int err = 0;
  ssize_t n;
  // Non-blocking: the child is done with the pipe when CloneVfork returns
  // (exec'd or exited), so nothing there (EAGAIN) or EOF means it exec'd,
  // even if another process still holds the write end.
  while ((n = ::read(fd, &err, sizeof(err))) < 0 && errno == EINTR) {
  }
  return n == static_cast<ssize_t>(sizeof(err)) ? err : 0;
}

}  // namespace plugd::broker::internal
