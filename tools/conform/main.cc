// plugd-conform: the conformance checker for plugd plugins in any language.
// docs/conformance.md explains the checks; conform.h is the library.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "conform.h"
#include "process.h"

namespace {

// The signal the signal thread took, 0 until then. Set before it kills the
// plugin, so a check that ends because of that kill sees it.
std::atomic<int> g_interrupted{0};

// SIGINT, SIGTERM and SIGHUP end the checker, but never leave a plugin (or
// anything it started) behind: every descendant is SIGKILLed first. The
// signals are blocked in every thread before gRPC starts its own and taken
// by sigwait here, so no work happens in a signal handler.
void StartSignalThread() {
  static sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([] {
    int signo = 0;
    while (sigwait(&set, &signo) != 0) {
    }
    g_interrupted.store(signo);
    plugd::conform::KillDescendants();
    std::cerr << "plugd-conform: interrupted by signal " << signo
              << "; stopped the plugin\n";
    _exit(128 + signo);
  }).detach();
}

}  // namespace

int main(int argc, char** argv) {
  using plugd::conform::ParsedCommandLine;
  // Before gRPC reads its configuration (conform.h says why).
  const bool set_backup_poll =
      std::getenv(plugd::conform::kEnvBackupPollMs) == nullptr;
  if (set_backup_poll) {
    setenv(plugd::conform::kEnvBackupPollMs, plugd::conform::kBackupPollMs, 1);
  }
  ParsedCommandLine parsed = plugd::conform::ParseCommandLine(
      std::vector<std::string>(argv + 1, argv + argc));
  switch (parsed.kind) {
    case ParsedCommandLine::Kind::kHelp:
      std::cout << parsed.text;
      return plugd::conform::kExitAllPassed;
    case ParsedCommandLine::Kind::kUsageError:
      std::cerr << parsed.text;
      return plugd::conform::kExitUsage;
    case ParsedCommandLine::Kind::kRun:
      break;
  }
  if (set_backup_poll) {
    parsed.options.unset_for_plugin.push_back(plugd::conform::kEnvBackupPollMs);
  }
  StartSignalThread();
  const plugd::conform::Report report =
      plugd::conform::RunChecks(parsed.options);
  if (g_interrupted.load() != 0) {
    // The checks ended because the signal thread killed the plugin; it ends
    // the process with 128 + the signal. No report, no exit code of ours.
    for (;;) pause();
  }
  std::cout << (parsed.json ? plugd::conform::FormatJson(report)
                            : plugd::conform::FormatHuman(report))
            << std::flush;
  return report.all_passed() ? plugd::conform::kExitAllPassed
                             : plugd::conform::kExitSomeFailed;
}
