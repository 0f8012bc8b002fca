#include "plugd/broker/socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>

#include "gtest/gtest.h"

namespace plugd::broker {
namespace {

// A Unix socket bound at `path`; listening when `listen` is true.
int BindSocket(const std::string& path, bool listen) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  EXPECT_EQ(::bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)),
            0);
  if (listen) {
    EXPECT_EQ(::listen(fd, 4), 0);
  }
  return fd;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

class SocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir = MakeSocketDir();
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
  }
  void TearDown() override {
    RemoveSocketDir(dir_);
    EXPECT_FALSE(Exists(dir_));
  }
  std::string dir_;
};

// A child process that makes a socket directory (with a file in it, as a
// plugin's socket would be), reports its path and, unless `exit_at_once`,
// waits until told to go; it never removes the directory, as a killed host
// cannot.
class DirMaker {
 public:
  explicit DirMaker(bool exit_at_once) {
    int report[2];
    int go[2];
    EXPECT_EQ(::pipe2(report, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(go, O_CLOEXEC), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(report[0]);
      ::close(go[1]);  // so that the parent's close is EOF here
      absl::StatusOr<std::string> dir = MakeSocketDir();
      if (!dir.ok()) _exit(2);
      const std::string sock = *dir + "/p.sock";
      ::close(::open(sock.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
      const std::string line = *dir + "\n";
      if (::write(report[1], line.data(), line.size()) < 0) _exit(3);
      char byte;
      if (!exit_at_once) (void)!::read(go[0], &byte, 1);  // EOF: go
      _exit(0);
    }
    ::close(report[1]);
    ::close(go[0]);
    go_ = go[1];
    char buffer[128];
    ssize_t n = ::read(report[0], buffer, sizeof(buffer));
    ::close(report[0]);
    if (n > 1) path_.assign(buffer, n - 1);
  }
  ~DirMaker() { Finish(); }
  const std::string& path() const { return path_; }
  // Lets the child exit and reaps it.
  void Finish() {
    if (go_ >= 0) ::close(go_);
    go_ = -1;
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int go_ = -1;
  std::string path_;
};

// While it lives, MakeSocketDir (here and in children forked meanwhile) uses
// a base of its own: XDG_RUNTIME_DIR points at a fresh directory, so that
// the tests running at the same time, which sweep the shared base, do not
// sweep this one's directories. Removes it all at the end, whatever the
// test did.
class OwnSocketBase {
 public:
  OwnSocketBase() {
    char root[] = "/tmp/plugd-st-XXXXXX";
    if (::mkdtemp(root) == nullptr) return;
    root_ = root;
    if (const char* old = std::getenv("XDG_RUNTIME_DIR"); old != nullptr) {
      old_ = old;
    }
    ::setenv("XDG_RUNTIME_DIR", root_.c_str(), 1);
  }
  ~OwnSocketBase() {
    if (root_.empty()) return;
    if (old_.has_value()) {
      ::setenv("XDG_RUNTIME_DIR", old_->c_str(), 1);
    } else {
      ::unsetenv("XDG_RUNTIME_DIR");
    }
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
  bool ok() const { return !root_.empty(); }
  // Where MakeSocketDir makes its directories meanwhile.
  std::string base() const { return root_ + "/plugd"; }

 private:
  std::string root_;
  std::optional<std::string> old_;
};

TEST(SocketDirSweepTest,
     MakeSocketDirRemovesOnlyDirectoriesWhoseMakerHasExited) {
  OwnSocketBase base;
  ASSERT_TRUE(base.ok());
  absl::StatusOr<std::string> own = MakeSocketDir();
  ASSERT_TRUE(own.ok()) << own.status();
  ASSERT_EQ(own->rfind(base.base() + "/", 0), 0u) << *own;
  DirMaker alive(/*exit_at_once=*/false);
  DirMaker gone(/*exit_at_once=*/true);  // made last: nothing swept it yet
  gone.Finish();
  ASSERT_FALSE(gone.path().empty());
  ASSERT_FALSE(alive.path().empty());
  EXPECT_TRUE(Exists(gone.path() + "/p.sock"));
  // A directory that MakeSocketDir did not make (no owner lock).
  std::string foreign = base.base() + "/XXXXXX";
  ASSERT_NE(::mkdtemp(foreign.data()), nullptr);

  absl::StatusOr<std::string> next = MakeSocketDir();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_FALSE(Exists(gone.path())) << "its maker has exited";
  EXPECT_TRUE(Exists(alive.path() + "/p.sock")) << "its maker still runs";
  EXPECT_TRUE(Exists(*own)) << "this process's own";
  EXPECT_TRUE(Exists(foreign)) << "not made by MakeSocketDir";

  // Once its maker has exited, the next MakeSocketDir removes it too.
  alive.Finish();
  RemoveSocketDir(*next);
  next = MakeSocketDir();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_FALSE(Exists(alive.path()));
  EXPECT_TRUE(Exists(*own));
  RemoveSocketDir(*next);
  RemoveSocketDir(*own);
  EXPECT_FALSE(Exists(*own));
}

// A directory that cannot be emptied (a subdirectory in it, which
// RemoveSocketDir does not remove) keeps its owner lock, so that a later
// sweep tries again instead of losing track of it.
TEST(SocketDirSweepTest, ADirectoryLeftWithSomethingInItKeepsItsLock) {
  OwnSocketBase base;
  ASSERT_TRUE(base.ok());
  absl::StatusOr<std::string> dir = MakeSocketDir();
  ASSERT_TRUE(dir.ok()) << dir.status();
  ASSERT_EQ(::mkdir((*dir + "/sub").c_str(), 0700), 0);
  ASSERT_EQ(::close(::open((*dir + "/a.sock").c_str(),
                           O_CREAT | O_WRONLY | O_CLOEXEC, 0600)),
            0);
  RemoveSocketDir(*dir);
  EXPECT_FALSE(Exists(*dir + "/a.sock"));
  EXPECT_TRUE(Exists(*dir + "/.owner"));
  // Its lock is free now: a sweep empties what it can, and once the
  // subdirectory is gone, removes it.
  ASSERT_EQ(::rmdir((*dir + "/sub").c_str()), 0);
  absl::StatusOr<std::string> next = MakeSocketDir();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_FALSE(Exists(*dir));
  RemoveSocketDir(*next);
}

TEST_F(SocketTest, MakeSocketDirIsPrivateAndShort) {
  struct stat st;
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_LE(dir_.size(), 64u);
  absl::StatusOr<std::string> other = MakeSocketDir();
  ASSERT_TRUE(other.ok());
  EXPECT_NE(*other, dir_);
  RemoveSocketDir(*other);
}

TEST_F(SocketTest, PrepareRemovesAStaleSocket) {
  std::string path = dir_ + "/stale.sock";
  ::close(BindSocket(path, /*listen=*/false));
  ASSERT_TRUE(Exists(path));
  EXPECT_TRUE(PrepareSocketPath(path).ok());
  EXPECT_FALSE(Exists(path));
}

TEST_F(SocketTest, PrepareRefusesALiveSocket) {
  std::string path = dir_ + "/live.sock";
  int fd = BindSocket(path, /*listen=*/true);
  absl::Status status = PrepareSocketPath(path);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_TRUE(Exists(path));
  ::close(fd);
}

TEST_F(SocketTest, PrepareRefusesANonSocket) {
  std::string path = dir_ + "/file";
  ::close(::creat(path.c_str(), 0600));
  EXPECT_EQ(PrepareSocketPath(path).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(Exists(path));
}

TEST_F(SocketTest, PrepareChecksTheDirectory) {
  absl::Status status = PrepareSocketPath(dir_ + "/missing/x.sock");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_TRUE(PrepareSocketPath(dir_ + "/fresh.sock").ok());
}

// A go-plugin plugin's stable path is a symlink to the socket it chose
// (LaunchOptions::go_plugin): probed as that socket, removed as a link.
TEST_F(SocketTest, SymlinkToASocketCountsAsThatSocket) {
  const std::string target = dir_ + "/plugin123";
  const std::string link = dir_ + "/go.sock";
  int fd = BindSocket(target, /*listen=*/true);
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  absl::Status status = PrepareSocketPath(link);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_TRUE(RemoveStaleSocket(link).ok());
  EXPECT_TRUE(Exists(link));  // live: kept
  ::close(fd);                // the socket file stays, nobody accepts
  EXPECT_TRUE(RemoveStaleSocket(link).ok());
  EXPECT_FALSE(Exists(link));   // the stale link is removed...
  EXPECT_TRUE(Exists(target));  // ...never what it points to
}

TEST_F(SocketTest, DanglingSymlinkIsStale) {
  const std::string link = dir_ + "/go.sock";
  ASSERT_EQ(::symlink((dir_ + "/gone").c_str(), link.c_str()), 0);
  EXPECT_TRUE(PrepareSocketPath(link).ok());
  EXPECT_FALSE(Exists(link));
}

TEST_F(SocketTest, SymlinkToANonSocketIsRefused) {
  const std::string file = dir_ + "/file";
  const std::string link = dir_ + "/go.sock";
  ::close(::creat(file.c_str(), 0600));
  ASSERT_EQ(::symlink(file.c_str(), link.c_str()), 0);
  EXPECT_EQ(PrepareSocketPath(link).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(Exists(link));
  EXPECT_TRUE(Exists(file));
}

}  // namespace
}  // namespace plugd::broker
