// Internal: starting a child process the cheap way, as posix_spawn and Go's
// os/exec do: clone(CLONE_VM | CLONE_VFORK), so the kernel copies no page
// tables. Used by the launcher (through VforkLauncher, a Boost.Process v2
// launcher) and by the benchmarks' own child processes.
//
// Why not fork: fork copies the parent's page tables and then makes every
// page the parent writes take a copy-on-write fault until the child has
// exec'd; in a host or broker with gRPC's threads running that made a spawn
// 2-4 ms slower on the build VM (performance-notes.md §4). Why not Boost's own
// vfork_launcher: it runs Asio's notify_fork(fork_child) and exit() in the
// child, both of which write memory the child shares with its parent.
#ifndef PLUGD_BROKER_SPAWN_H_
#define PLUGD_BROKER_SPAWN_H_

#include <errno.h>
#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

#include <boost/process/v2/default_launcher.hpp>
#include <boost/process/v2/process.hpp>
#include <utility>

namespace plugd::broker::internal {

// Runs `child(arg)` in a new process that shares this one's memory until it
// calls execve or exits, on a stack of its own; returns its pid once it has
// done either (the calling thread waits; the others run on), or -1 with
// errno. While the child runs, every signal, glibc's internal ones
// included, is blocked in the calling thread (the child inherits that mask)
// and the child has reset every caught signal to its default action before
// `child` runs, so no handler of the parent can run in the child.
//
// `child` must not allocate, take locks or write memory the parent uses,
// except through `arg` for a result the parent reads after the return:
// only async-signal-safe calls, then execve or _exit (use ChildWrite, not
// write). Its return value is the child's exit status if it returns.
// errno is meaningful only when the result is -1: the child's failed calls
// set the calling thread's errno too (it shares the thread's TLS).
//
// kCopied gives the child a copy of the memory instead (fork's semantics,
// still waiting for the exec), for a child that changes its user: the kernel
// marks a memory map whose task changed credentials not dumpable, and a
// shared map would make the parent so too (no core dumps, /proc files
// root's). The child's writes through `arg` do not reach the parent then.
enum class ChildMemory { kShared, kCopied };
pid_t CloneVfork(int (*child)(void*), void* arg,
                 ChildMemory memory = ChildMemory::kShared);

// For a child under CloneVfork's rules: write(2) as a raw system call (glibc's
// wrapper is a cancellation point and marks the calling thread's, here the
// parent thread's, cancellation state).
void ChildWrite(int fd, const void* data, size_t size);

// pipe2(fds, flags) with both ends moved above stderr (so a child's dup2
// onto 0-2 cannot replace them; the moved copies are close-on-exec, the
// other status flags stay); 0 or the errno of the failure, with both fds -1.
int MakePipeAboveStderr(int fds[2], int flags);

// After CloneVfork returned (the child has exec'd or exited): the errno the
// child wrote to the pipe, or 0 if it wrote none (it exec'd).
int ReadChildError(int fd);

namespace bp = boost::process::v2;

// A Boost.Process v2 launcher, called like bp::posix::default_launcher with
// one initializer, that starts the child with CloneVfork. The initializer's
// on_exec_setup(launcher, executable, argv) runs in the child under
// CloneVfork's rules (nothing of Boost runs there: no Asio fork
// notification, no close_all_fds, which allocates); it may exec by itself
// and returns an error otherwise. On failure `ec` holds the errno of the
// failed step and `pid` the pid of the child, which has exited and is left
// for the caller to reap. `memory` as for CloneVfork; with kCopied the
// error comes back through a pipe.
struct VforkLauncher : bp::posix::default_launcher {
  ChildMemory memory = ChildMemory::kShared;

  template <typename Executor, typename Args, typename Init>
  bp::basic_process<Executor> operator()(Executor exec, bp::error_code& ec,
                                         const bp::filesystem::path& executable,
                                         Args&& args, Init& init) {
    struct Shared {
      VforkLauncher* self;
      Init* init;
      const bp::filesystem::path* executable;
      const char* const* argv;
      int err;
      int err_pipe;  // kCopied: where the child writes `err`
    };
    Shared shared{
        this,        &init,
        &executable, this->build_argv_(executable, std::forward<Args>(args)),
        0,           -1};
    int err_pipe[2] = {-1, -1};
    if (memory == ChildMemory::kCopied) {
      // Non-blocking: see ReadChildError.
      if (const int err = MakePipeAboveStderr(err_pipe, O_CLOEXEC | O_NONBLOCK);
          err != 0) {
        ec.assign(err, bp::system_category());
        return bp::basic_process<Executor>(std::move(exec));
      }
      shared.err_pipe = err_pipe[1];
    }
    pid = CloneVfork(
        [](void* p) -> int {
          auto* s = static_cast<Shared*>(p);
          bp::error_code e =
              s->init->on_exec_setup(*s->self, *s->executable, s->argv);
          if (!e) {
            ::execve(s->executable->c_str(), const_cast<char* const*>(s->argv),
                     const_cast<char* const*>(s->self->env));
            e.assign(errno, bp::system_category());
          }
          s->err = e.value() != 0 ? e.value() : ECHILD;
          if (s->err_pipe >= 0) {
            ChildWrite(s->err_pipe, &s->err, sizeof(s->err));
          }
          ::_exit(127);
        },
        &shared, memory);
    const int clone_errno = errno;
    if (err_pipe[0] >= 0) {
      ::close(err_pipe[1]);
      if (pid > 0) shared.err = ReadChildError(err_pipe[0]);
      ::close(err_pipe[0]);
    }
    if (pid < 0) {
      ec.assign(clone_errno, bp::system_category());
      return bp::basic_process<Executor>(std::move(exec));
    }
    if (shared.err != 0) {
      ec.assign(shared.err, bp::system_category());
      return bp::basic_process<Executor>(std::move(exec));
    }
    ec.clear();
    return bp::basic_process<Executor>(std::move(exec), pid);
  }
};

}  // namespace plugd::broker::internal

#endif  // PLUGD_BROKER_SPAWN_H_
