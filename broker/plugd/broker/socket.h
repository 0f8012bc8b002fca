// Unix socket paths for plugins: a private directory per host, and making a
// path ready for a new plugin (removing a stale socket, refusing a live one).
//
//   absl::StatusOr<std::string> dir = plugd::broker::MakeSocketDir();
//   if (!dir.ok()) return dir.status();
//   std::string path = *dir + "/random.sock";      // well under 107 bytes
//   ... launch plugins with options.socket_path = path ...
//   plugd::broker::RemoveSocketDir(*dir);          // at the end
#ifndef PLUGD_BROKER_SOCKET_H_
#define PLUGD_BROKER_SOCKET_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace plugd::broker {

// Makes `path` ready for a plugin to bind: validates it (ValidateSocketPath),
// checks that its directory exists, and if a file is there:
//   * a socket some process still accepts on: ALREADY_EXISTS (left alone);
//   * a socket nobody listens on (connect gives ECONNREFUSED): removed;
//   * anything that is not a socket: ALREADY_EXISTS (left alone).
// A symlink (the stable path of a go-plugin plugin, see
// LaunchOptions::go_plugin) counts as the socket it points to; a dangling
// one is stale. Removing removes the link, never its target.
// Does not block: the probe connect is non-blocking.
absl::Status PrepareSocketPath(const std::string& path);

// Removes the socket file at `path` if nobody accepts on it any more (the
// same probe as PrepareSocketPath). OK when there is nothing to remove.
absl::Status RemoveStaleSocket(const std::string& path);

// Creates a private (mode 0700) directory for one host's plugin sockets and
// returns its path: a fresh mkdtemp directory under $XDG_RUNTIME_DIR/plugd
// when XDG_RUNTIME_DIR is set, writable and short enough, else under
// /tmp/plugd-$UID (created 0700; refused unless it is a directory owned by
// this user with no group/other access). The result is at most 64 bytes, so
// "<dir>/<name>.sock" stays under the 107-byte limit for names up to ~35
// bytes. The calling process holds a lock on the directory (a flock on its
// ".owner" file, not inherited across exec; shared with children forked
// without exec) until RemoveSocketDir or its exit; each call first removes
// the directories of the same parent whose maker exited without removing
// its own (killed, crashed), which is how their lock becomes free.
// Directories without that file, and this process's own, are left alone.
absl::StatusOr<std::string> MakeSocketDir();

// Removes a directory made by MakeSocketDir: unlinks the files directly in it
// (not recursively) and the directory, then releases this process's lock on
// it. A directory that cannot be emptied (a subdirectory in it) keeps its
// ".owner", so that a later MakeSocketDir sweeps it again. Best effort;
// never fails loudly.
void RemoveSocketDir(const std::string& path);

}  // namespace plugd::broker

#endif  // PLUGD_BROKER_SOCKET_H_
