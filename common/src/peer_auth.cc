#include "plugd/common/peer_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "plugd/common/log.h"
#include "plugd/common/protocol.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

namespace plugd {
namespace {

absl::Status ErrnoError(int err, absl::string_view what) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(what, ": ", std::strerror(err)));
}

std::string GroupText(gid_t gid) {
  struct group entry;
  struct group* found = nullptr;
  char buffer[4096];
  if (getgrgid_r(gid, &entry, buffer, sizeof(buffer), &found) == 0 &&
      found != nullptr) {
    return absl::StrCat(found->gr_name, " (gid ", gid, ")");
  }
  return absl::StrCat("gid ", gid);
}

}  // namespace

absl::StatusOr<PeerCredentials> GetPeerCredentials(int fd, bool with_groups) {
  struct ucred cred = {};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ErrnoError(errno, "getsockopt(SO_PEERCRED)");
  }
  PeerCredentials peer;
  peer.uid = cred.uid;
  peer.gid = cred.gid;
  peer.pid = cred.pid;
  if (with_groups) {
    std::vector<gid_t> groups(64);
    for (int attempt = 0; attempt < 2; ++attempt) {
      socklen_t bytes = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
      if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &bytes) ==
          0) {
        groups.resize(bytes / sizeof(gid_t));
        peer.groups = std::move(groups);
        break;
      }
      if (errno != ERANGE) break;  // an old kernel: no supplementary groups
      groups.resize(bytes / sizeof(gid_t) + 1);
    }
  }
  return peer;
}

bool PeerPolicy::Allows(const PeerCredentials& peer) const {
  if (peer.uid == 0) return true;
  for (const AllowedUid& allowed : uids) {
    if (allowed.uid == peer.uid) return true;
  }
  if (group.has_value()) {
    if (peer.gid == *group) return true;
    if (std::find(peer.groups.begin(), peer.groups.end(), *group) !=
        peer.groups.end()) {
      return true;
    }
  }
  return false;
}

std::string PeerPolicy::Refusal(const PeerCredentials& peer) const {
  std::vector<std::string> who = {"root"};
  for (const AllowedUid& allowed : uids) {
    if (allowed.uid == 0) continue;  // root, above
    who.push_back(
        allowed.whose.empty()
            ? absl::StrCat("uid ", allowed.uid)
            : absl::StrCat("uid ", allowed.uid, " (", allowed.whose, ")"));
  }
  if (group.has_value()) {
    who.push_back(absl::StrCat("members of group ", group_name.empty()
                                                        ? GroupText(*group)
                                                        : group_name));
  }
  std::string text = absl::StrCat(what, " refused the connection of uid ",
                                  peer.uid, " (pid ", peer.pid, "): only ",
                                  absl::StrJoin(who, ", "), " may connect");
  if (!how_to_allow.empty()) absl::StrAppend(&text, "; ", how_to_allow);
  return text;
}

// The second gRPC server, for refused connections: every method of every
// service answers PERMISSION_DENIED with the refusal of the peer behind the
// connection, found by the connection's peer name ("fd:N", which gRPC gives
// a connection added with AddInsecureChannelFromFd).
class PeerCheckedListener::Refuser final : public grpc::CallbackGenericService {
 public:
  // Records `peer`'s refusal for connection fd `fd`, before it is handed
  // over. A later connection with the same fd number replaces it; by then
  // the old one is closed.
  void Remember(int fd, std::string refusal) {
    absl::MutexLock lock(&mu_);
    refusals_[absl::StrCat("fd:", fd)] = std::move(refusal);
  }

  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override {
    std::string message;
    {
      absl::MutexLock lock(&mu_);
      auto it = refusals_.find(context->peer());
      message = it != refusals_.end()
                    ? it->second
                    : "this socket refused the caller's uid (see "
                      "docs/security.md)";
    }
    class Refusal final : public grpc::ServerGenericBidiReactor {
     public:
      explicit Refusal(std::string message) {
        Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                            std::move(message)));
      }
      void OnDone() override { delete this; }
    };
    return new Refusal(std::move(message));
  }

  std::unique_ptr<grpc::Server> server;

 private:
  absl::Mutex mu_;
  std::map<std::string, std::string> refusals_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<PeerCheckedListener>>
PeerCheckedListener::Listen(const std::string& path, PeerPolicy policy,
                            mode_t mode) {
  if (absl::Status valid = ValidateSocketPath(path); !valid.ok()) return valid;
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "socket(AF_UNIX)");
  // The file bind() creates takes the socket inode's mode, less the umask:
  // never looser than `mode`; the chmod below makes it exactly `mode`.
  fchmod(fd, mode);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    close(fd);
    if (err == EADDRINUSE) {
      return absl::AlreadyExistsError(
          absl::StrCat("cannot listen on ", path, ": the file exists"));
    }
    return ErrnoError(err, absl::StrCat("cannot listen on ", path));
  }
  if (chmod(path.c_str(), mode) != 0 || listen(fd, SOMAXCONN) != 0) {
    const int err = errno;
    close(fd);
    unlink(path.c_str());
    return ErrnoError(err, absl::StrCat("cannot listen on ", path));
  }
  const int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    const int err = errno;
    close(fd);
    unlink(path.c_str());
    return ErrnoError(err, "eventfd");
  }
  return std::unique_ptr<PeerCheckedListener>(
      new PeerCheckedListener(path, fd, wake, std::move(policy)));
}

PeerCheckedListener::PeerCheckedListener(std::string path, int listen_fd,
                                         int wake_fd, PeerPolicy policy)
    : path_(std::move(path)),
      listen_fd_(listen_fd),
      wake_fd_(wake_fd),
      refuser_(std::make_unique<Refuser>()),
      policy_(std::move(policy)) {}

PeerCheckedListener::~PeerCheckedListener() {
  Stop();
  close(wake_fd_);
}

absl::Status PeerCheckedListener::Start(grpc::Server* server) {
  server_ = server;
  grpc::ServerBuilder builder;
  builder.RegisterCallbackGenericService(refuser_.get());
  refuser_->server = builder.BuildAndStart();
  if (refuser_->server == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot start the refusal server for ", path_));
  }
  try {
    thread_ = std::thread([this] { AcceptLoop(); });
  } catch (const std::system_error& e) {
    return absl::InternalError(absl::StrCat(
        "cannot start the accept thread for ", path_, ": ", e.what()));
  }
  return absl::OkStatus();
}

void PeerCheckedListener::SetPolicy(PeerPolicy policy) {
  absl::MutexLock lock(&mu_);
  policy_ = std::move(policy);
}

int64_t PeerCheckedListener::refused() const {
  absl::MutexLock lock(&mu_);
  return refused_;
}

void PeerCheckedListener::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
  listen_fd_ = -1;
  if (refuser_->server != nullptr) {
    refuser_->server->Shutdown(std::chrono::system_clock::now());
    refuser_->server->Wait();
  }
}

void PeerCheckedListener::AcceptLoop() {
  pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  while (true) {
    const int ready = poll(fds, 2, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      PLUGD_LOG(ERROR) << "accepting on " << path_
                       << " stopped: poll: " << std::strerror(errno);
      return;
    }
    if (fds[1].revents != 0) return;  // Stop()
    // Take every pending connection; the socket is non-blocking.
    while (true) {
      const int fd =
          accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        Handle(fd);
        continue;
      }
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      // Out of file descriptors (EMFILE, ENFILE) or memory: the pending
      // connection stays queued and the socket stays readable. Back off
      // instead of spinning, waking early for Stop().
      PLUGD_LOG(WARNING) << "cannot accept a connection on " << path_ << ": "
                         << std::strerror(errno) << "; retrying in 100 ms";
      pollfd wake = {wake_fd_, POLLIN, 0};
      if (poll(&wake, 1, 100) > 0) return;
      break;
    }
  }
}

void PeerCheckedListener::Handle(int fd) {
  PeerPolicy policy;
  {
    absl::MutexLock lock(&mu_);
    policy = policy_;
  }
  absl::StatusOr<PeerCredentials> peer =
      GetPeerCredentials(fd, policy.group.has_value());
  if (!peer.ok()) {
    PLUGD_LOG(WARNING) << path_ << ": dropping a connection whose peer is "
                       << "unknown: " << peer.status().message();
    close(fd);
    return;
  }
  if (policy.Allows(*peer)) {
    grpc::AddInsecureChannelFromFd(server_, fd);
    return;
  }
  std::string refusal = policy.Refusal(*peer);
  PLUGD_LOG(WARNING) << refusal;
  {
    absl::MutexLock lock(&mu_);
    ++refused_;
  }
  refuser_->Remember(fd, std::move(refusal));
  grpc::AddInsecureChannelFromFd(refuser_->server.get(), fd);
}

}  // namespace plugd
