// The plugd daemon: a Supervisor configured from a YAML file, the admin API
// on a Unix socket, a reaper, signals (SIGHUP reloads, SIGTERM/SIGINT stop).
//
//   int main(int argc, char** argv) { return plugd::broker::DaemonMain(argc,
//   argv); }
#ifndef PLUGD_BROKER_DAEMON_DAEMON_H_
#define PLUGD_BROKER_DAEMON_DAEMON_H_

#include <string>

#include "absl/status/statusor.h"
#include "plugd/broker/supervisor.h"
#include "plugd/v1/config.pb.h"

namespace plugd::broker {

// The supervisor's spec for one configured plugin, its socket in `socket_dir`.
absl::StatusOr<SupervisedPluginSpec> SpecFromConfig(
    const v1::PluginConfig& config, const std::string& socket_dir);

// Runs the daemon; returns the process exit code: 0 after a clean stop,
// 1 for a runtime failure (e.g. the admin socket is taken), 2 for a usage or
// config error.
int DaemonMain(int argc, char** argv);

}  // namespace plugd::broker

#endif  // PLUGD_BROKER_DAEMON_DAEMON_H_
