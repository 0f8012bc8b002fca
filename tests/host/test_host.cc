// A minimal host for tests: launches the plugins named on its command line,
// prints "pid N" for each on stdout, then waits until killed.
#include <unistd.h>

#include <iostream>

#include "plugd/host/host.h"

int main(int argc, char** argv) {
  plugd::host::HostOptions host_options;
  host_options.mutex_deadlock_detection = true;  // checks our locks
  auto host = plugd::host::Host::Create(host_options);
  if (!host.ok()) {
    std::cerr << host.status() << "\n";
    return 1;
  }
  for (int i = 1; i < argc; ++i) {
    plugd::host::PluginOptions options;
    options.command = {argv[i]};
    options.name = "p" + std::to_string(i);
    auto plugin = (*host)->Launch(options);
    if (!plugin.ok()) {
      std::cerr << plugin.status() << "\n";
      return 1;
    }
    std::cout << "pid " << (*plugin)->pid() << std::endl;
  }
  std::cout << "ready" << std::endl;
  for (;;) pause();
}
