// plugd-test-embedded-host ADMIN_ADDRESS PLUGIN_BINARY: a host embedding the
// supervisor. It serves the admin API at ADMIN_ADDRESS, launches
// PLUGIN_BINARY supervised (name "random"), prints "ready" on stdout and
// serves until SIGTERM or SIGINT, then stops its plugins and exits 0.
#include <signal.h>

#include <iostream>

#include "plugd/host/host.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: plugd-test-embedded-host ADMIN_ADDRESS PLUGIN\n";
    return 2;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  plugd::host::HostOptions host_options;
  host_options.admin_address = argv[1];
  host_options.mutex_deadlock_detection = true;  // checks our locks
  auto host = plugd::host::Host::Create(host_options);
  if (!host.ok()) {
    std::cerr << host.status() << "\n";
    return 1;
  }
  plugd::host::PluginOptions options;
  options.name = "random";
  options.command = {argv[2]};
  plugd::host::SupervisionOptions supervision;
  supervision.backoff.initial = absl::Milliseconds(20);
  supervision.backoff.max = absl::Milliseconds(100);
  supervision.max_restarts = 0;
  options.supervision = supervision;
  auto plugin = (*host)->Launch(options);
  if (!plugin.ok()) {
    std::cerr << plugin.status() << "\n";
    return 1;
  }
  std::cout << "ready " << (*host)->admin_address() << std::endl;
  int sig = 0;
  sigwait(&set, &sig);
  (*host)->StopAll();
  return 0;
}
