// plugctl: the admin CLI of the plugd broker. See docs/plugctl.md.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "cli.h"
#include "plugd/common/deadlock_detection.h"
#include "run.h"

namespace {

// SIGINT and SIGTERM cancel the call in flight (a followed stream then ends
// with exit 0); a second one ends plugctl at once. The signals are blocked in
// every thread before gRPC starts its own, and taken by sigwait here, so no
// work happens in a signal handler. SIGUSR2 tells the thread to finish.
class SignalThread {
 public:
  explicit SignalThread(plugd::plugctl::Interrupter* interrupter) {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    thread_ = std::thread([this, interrupter] {
      bool interrupted = false;
      for (;;) {
        int signo = 0;
        if (sigwait(&set_, &signo) != 0) continue;
        if (signo == SIGUSR2) return;
        if (interrupted) _exit(128 + signo);
        interrupted = true;
        interrupter->Interrupt();
      }
    });
  }
  ~SignalThread() {
    pthread_kill(thread_.native_handle(), SIGUSR2);
    thread_.join();
  }

 private:
  sigset_t set_;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  using plugd::plugctl::ParseResult;
  const std::vector<std::string> args(argv + 1, argv + argc);
  ParseResult parsed = plugd::plugctl::ParseCommandLine(
      args, plugd::plugctl::Environment::FromProcess());
  switch (parsed.kind) {
    case ParseResult::Kind::kHelp:
      std::cout << parsed.text;
      return plugd::plugctl::kExitOk;
    case ParseResult::Kind::kUsageError:
      std::cerr << parsed.text;
      return plugd::plugctl::kExitUsage;
    case ParseResult::Kind::kRun:
      break;
  }
  plugd::SetMutexDeadlockDetection(false);  // before gRPC's threads
  plugd::plugctl::Interrupter interrupter;
  int code;
  {
    SignalThread signals(&interrupter);
    code =
        plugd::plugctl::Run(parsed.options, std::cout, std::cerr, &interrupter);
  }
  std::cout.flush();
  return code;
}
