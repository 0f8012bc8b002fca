#include "plugd/broker/spawn.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
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

int RunChild(void* p) {
  const Trampoline* t = static_cast<const Trampoline*>(p);
  // Every signal is blocked (inherited from the parent's thread). A caught
  // signal's handler would run here, on memory shared with the parent: reset
  // each to its default action before anything can unblock them. Ignored
  // signals stay ignored, as across fork and exec.
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction action;
    if (::sigaction(sig, nullptr, &action) != 0) continue;  // glibc's own
    if (action.sa_handler == SIG_DFL || action.sa_handler == SIG_IGN) continue;
    action.sa_handler = SIG_DFL;
    action.sa_flags = 0;
    sigemptyset(&action.sa_mask);
    ::sigaction(sig, &action, nullptr);
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
  ::mprotect(stack, guard, PROT_NONE);
  char* top = static_cast<char*>(stack) + guard + kChildStackBytes;

  sigset_t all;
  sigset_t old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &old);
  Trampoline trampoline{child, arg};
  // CLONE_VFORK: this thread resumes when the child has exec'd or exited, so
  // the stack and everything `arg` points to outlive the child's use of them.
  const int flags =
      (memory == ChildMemory::kShared ? CLONE_VM : 0) | CLONE_VFORK | SIGCHLD;
  const pid_t pid = ::clone(&RunChild, top, flags, &trampoline);
  const int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::munmap(stack, kChildStackBytes + guard);
  errno = clone_errno;
  return pid;
}

}  // namespace plugd::broker::internal
