// "What may run", at the launcher: executable pins (sha256, exec of the
// hashed descriptor), resource limits, the environment, and running as
// another user. Real processes: plugd-test-raw and shell scripts.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugd/broker/event_loop.h"
#include "plugd/broker/launcher.h"
#include "plugd/broker/launcher_testing.h"
#include "plugd/broker/socket.h"
#include "plugd/common/exec_policy.h"
#include "test_util.h"

namespace plugd::broker {
namespace {

using ::plugd::broker::testing::ChildrenOfThisProcess;
using ::plugd::broker::testing::ProcessGone;
using ::testing::HasSubstr;
using ::testing::Not;

// Runs a shell command, returns its stdout (trailing newline stripped).
std::string Shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    out.append(buffer, n);
  }
  ::pclose(pipe);
  return std::string(absl::StripTrailingAsciiWhitespace(out));
}

// "sha256:<hex>" of `path`, computed by coreutils' sha256sum (the command
// the docs tell operators to use), not by the code under test.
std::string PinOf(const std::string& path) {
  std::string line = Shell(absl::StrCat("sha256sum '", path, "'"));
  return absl::StrCat("sha256:", line.substr(0, 64));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

void WriteExecutable(const std::string& path, const std::string& text) {
  {
    std::ofstream out(path, std::ios::trunc);
    out << text;
  }
  ASSERT_EQ(::chmod(path.c_str(), 0755), 0);
}

// The value of `field` ("Uid:") in /proc/PID/status.
std::string StatusField(pid_t pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, field)) {
      return std::string(absl::StripAsciiWhitespace(line.substr(field.size())));
    }
  }
  return "";
}

class ExecGuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir = MakeSocketDir();
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
    char work[] = "/tmp/pdx-XXXXXX";
    ASSERT_NE(::mkdtemp(work), nullptr);
    work_ = work;
    ::chmod(work_.c_str(), 0755);  // a run-as plugin must reach its binary
  }

  void TearDown() override {
    internal::SetAfterExecutableVerifiedForTesting(nullptr);
    plugins_.clear();
    for (pid_t pid : pids_) {
      EXPECT_TRUE(ProcessGone(pid)) << "pid " << pid << " is still running";
    }
    EXPECT_TRUE(ChildrenOfThisProcess().empty());
    RemoveSocketDir(dir_);
    std::error_code ignored;
    std::filesystem::remove_all(work_, ignored);
  }

  LaunchOptions Options(const std::string& name) {
    LaunchOptions options;
    options.name = name;
    options.command = {PLUGD_TEST_RAW, "--mode=ok"};
    options.socket_path = absl::StrCat(dir_, "/", name, ".sock");
    options.stop_grace = absl::Seconds(2);
    options.output.sink = [](const std::string&, const OutputLine&) {};
    return options;
  }

  absl::StatusOr<std::shared_ptr<PluginProcess>> Launch(LaunchOptions options) {
    auto plugin = PluginProcess::Launch(loop_, std::move(options));
    if (plugin.ok()) {
      pids_.insert((*plugin)->pid());
      plugins_.push_back(*plugin);
    }
    return plugin;
  }

  // A copy of plugd-test-raw in the work directory.
  std::string CopyOfRawPlugin(const std::string& name) {
    std::string path = absl::StrCat(work_, "/", name);
    std::filesystem::copy_file(PLUGD_TEST_RAW, path);
    ::chmod(path.c_str(), 0755);
    return path;
  }

  EventLoop loop_;
  std::string dir_;
  std::string work_;
  std::set<pid_t> pids_;
  std::vector<std::shared_ptr<PluginProcess>> plugins_;
};

TEST_F(ExecGuardTest, MatchingPinRunsTheBinary) {
  LaunchOptions options = Options("pinned");
  options.executable_sha256 = PinOf(PLUGD_TEST_RAW);
  // Upper case is accepted too (sha256sum prints lower case).
  for (size_t i = 7; i < options.executable_sha256.size(); ++i) {
    options.executable_sha256[i] = static_cast<char>(
        std::toupper(static_cast<unsigned char>(options.executable_sha256[i])));
  }
  auto plugin = Launch(options);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  char exe[4096] = {};
  ASSERT_GT(::readlink(absl::StrCat("/proc/", (*plugin)->pid(), "/exe").c_str(),
                       exe, sizeof(exe) - 1),
            0);
  EXPECT_EQ(std::filesystem::canonical(exe),
            std::filesystem::canonical(PLUGD_TEST_RAW));
  // argv[0] is still the path, for ps.
  std::string cmdline =
      ReadFile(absl::StrCat("/proc/", (*plugin)->pid(), "/cmdline"));
  EXPECT_TRUE(absl::StartsWith(cmdline, PLUGD_TEST_RAW)) << cmdline;
  // The verified descriptor did not leak into the plugin.
  for (const auto& entry : std::filesystem::directory_iterator(
           absl::StrCat("/proc/", (*plugin)->pid(), "/fd"))) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(entry.path(), ec);
    EXPECT_NE(target.string(), PLUGD_TEST_RAW) << entry.path();
  }
}

TEST_F(ExecGuardTest, MismatchIsRefusedWithBothHashes) {
  const std::string actual = PinOf(PLUGD_TEST_RAW);
  const std::string expected = absl::StrCat("sha256:", std::string(64, 'a'));
  LaunchOptions options = Options("mismatch");
  options.executable_sha256 = expected;
  auto plugin = Launch(options);
  ASSERT_FALSE(plugin.ok());
  const absl::Status& status = plugin.status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  const std::string message(status.message());
  EXPECT_THAT(message, HasSubstr("plugin mismatch"));
  EXPECT_THAT(message, HasSubstr(absl::StrCat("expected ", expected)));
  EXPECT_THAT(message, HasSubstr(absl::StrCat("the file has ", actual)));
  EXPECT_THAT(message, HasSubstr("update the pin"));
  EXPECT_THAT(message, HasSubstr("sha256sum"));
  ASSERT_TRUE(status.GetPayload(kExecutableMismatchPayload).has_value());
  EXPECT_EQ(std::string(*status.GetPayload(kExecutableMismatchPayload)),
            actual);
  // Nothing was started.
  EXPECT_TRUE(ChildrenOfThisProcess().empty());
}

TEST_F(ExecGuardTest, MalformedPinIsInvalidArgument) {
  for (const std::string& pin :
       {std::string("md5:abc"), std::string("sha256:abc"),
        absl::StrCat("sha256:", std::string(63, 'a'), "g"),
        std::string(64, 'a')}) {
    LaunchOptions options = Options("bad-pin");
    options.executable_sha256 = pin;
    auto plugin = Launch(options);
    ASSERT_FALSE(plugin.ok()) << pin;
    EXPECT_EQ(plugin.status().code(), absl::StatusCode::kInvalidArgument)
        << plugin.status();
    EXPECT_THAT(std::string(plugin.status().message()),
                HasSubstr("sha256:<64 hex digits>"));
  }
}

// The check-then-swap window: the file at the path is replaced after the
// launcher opened and hashed it, before the fork. The launcher executes the
// descriptor it hashed, so the checked plugin runs, not the impostor. The
// same swap without a pin (exec by path) runs the impostor: the hook really
// sits inside the window.
TEST_F(ExecGuardTest, FileSwappedAfterTheCheckDoesNotRun) {
  const std::string path = CopyOfRawPlugin("swapped");
  const std::string impostor = absl::StrCat(work_, "/impostor");
  auto make_impostor = [&] {
    WriteExecutable(impostor, "#!/bin/sh\necho 'impostor ran' >&2\nexit 3\n");
  };
  auto swap = [&](const LaunchOptions&) {
    ASSERT_EQ(std::rename(impostor.c_str(), path.c_str()), 0);
  };

  make_impostor();
  LaunchOptions options = Options("swapped");
  options.command = {path, "--mode=ok"};
  options.executable_sha256 = PinOf(path);
  internal::SetAfterExecutableVerifiedForTesting(swap);
  auto plugin = Launch(options);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  EXPECT_THAT(ReadFile(path), HasSubstr("impostor"));  // the path changed
  char exe[4096] = {};
  ::readlink(absl::StrCat("/proc/", (*plugin)->pid(), "/exe").c_str(), exe,
             sizeof(exe) - 1);
  EXPECT_THAT(std::string(exe), HasSubstr("(deleted)"));  // the old file

  // Control: no pin, same swap, the impostor runs.
  std::filesystem::remove(path);
  std::filesystem::copy_file(PLUGD_TEST_RAW, path);
  make_impostor();
  LaunchOptions unpinned = Options("unpinned");
  unpinned.command = {path, "--mode=ok"};
  auto ran = Launch(unpinned);
  ASSERT_FALSE(ran.ok());
  EXPECT_THAT(std::string(ran.status().message()), HasSubstr("impostor ran"));
}

// The Python and Node plugins are `#!` launcher scripts: a pinned script is
// hashed and executed by descriptor too; the interpreter reads it from
// /dev/fd/N.
TEST_F(ExecGuardTest, PinnedScriptRuns) {
  const std::string script = absl::StrCat(work_, "/plugd-script");
  WriteExecutable(
      script, absl::StrCat("#!/bin/sh\necho \"script \\$0=$0\" >&2\n", "exec '",
                           PLUGD_TEST_RAW, "' \"$@\"\n"));
  LaunchOptions options = Options("script");
  options.command = {script, "--mode=ok"};
  options.executable_sha256 = PinOf(script);
  auto plugin = Launch(options);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  std::string said;
  for (const OutputLine& line : (*plugin)->output().Tail()) {
    if (absl::StartsWith(line.text, "script")) said = line.text;
  }
  EXPECT_THAT(said, HasSubstr("$0=/dev/fd/")) << said;

  // And a changed script is refused.
  WriteExecutable(script, "#!/bin/sh\nexit 0\n");
  options.name = "changed-script";
  options.socket_path = absl::StrCat(dir_, "/changed-script.sock");
  auto refused = Launch(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ExecGuardTest, LimitsAreSetInTheChild) {
  LaunchOptions options = Options("limited");
  options.limits.address_space_bytes = uint64_t{3} << 30;
  options.limits.open_files = 123;
  options.limits.cpu_seconds = 600;
  options.limits.processes = 4321;
  auto plugin = Launch(options);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  const std::string limits =
      ReadFile(absl::StrCat("/proc/", (*plugin)->pid(), "/limits"));
  auto row = [&](const std::string& name) {
    for (absl::string_view line : absl::StrSplit(limits, '\n')) {
      if (absl::StartsWith(line, name)) {
        std::vector<absl::string_view> fields =
            absl::StrSplit(line.substr(name.size()), ' ', absl::SkipEmpty());
        return absl::StrCat(fields[0], " ", fields[1]);  // soft hard
      }
    }
    return std::string("missing");
  };
  EXPECT_EQ(row("Max address space"), "3221225472 3221225472") << limits;
  EXPECT_EQ(row("Max open files"), "123 123") << limits;
  EXPECT_EQ(row("Max cpu time"), "600 601") << limits;  // SIGKILL 1 s later
  EXPECT_EQ(row("Max processes"), "4321 4321") << limits;
}

TEST_F(ExecGuardTest, ZeroLimitIsInvalid) {
  LaunchOptions options = Options("zero");
  options.limits.open_files = 0;
  auto plugin = Launch(options);
  ASSERT_FALSE(plugin.ok());
  EXPECT_EQ(plugin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(plugin.status().message()),
              HasSubstr("limits.open_files is 0"));
}

TEST_F(ExecGuardTest, EnvironmentStartsEmptyWithoutInheritance) {
  ::setenv("PLUGD_TEST_SECRET", "hunter2", 1);
  LaunchOptions options = Options("clean-env");
  options.inherit_environment = false;
  options.env["GIVEN"] = "yes";
  auto plugin = Launch(options);
  ::unsetenv("PLUGD_TEST_SECRET");
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  std::vector<std::string> env = absl::StrSplit(
      ReadFile(absl::StrCat("/proc/", (*plugin)->pid(), "/environ")), '\0',
      absl::SkipEmpty());
  std::set<std::string> keys;
  for (const std::string& entry : env)
    keys.insert(entry.substr(0, entry.find('=')));
  EXPECT_EQ(keys, (std::set<std::string>{
                      "GIVEN", "PATH", "PLUGD_LAUNCHER_UID",
                      "PLUGD_MAGIC_COOKIE", "PLUGD_MAX_MESSAGE_BYTES",
                      "PLUGD_PLUGIN_NAME", "PLUGD_PROTOCOL_VERSIONS",
                      "PLUGD_SHUTDOWN_GRACE_MS", "PLUGD_SOCKET"}));
  EXPECT_THAT(env, ::testing::Contains(absl::StrCat("PATH=", kMinimalPath)));
}

TEST(DescribeLimitExitTest, SaysWhichLimit) {
  ResourceLimits limits;
  limits.address_space_bytes = uint64_t{64} << 20;
  limits.cpu_seconds = 2;
  ExitStatus abort_status{true, 0, SIGABRT, false};
  EXPECT_EQ(DescribeLimitExit(limits, abort_status, {}),
            "memory limit 64MiB (limits.address_space) reached?");
  ExitStatus exited{false, 2, 0, false};
  EXPECT_EQ(DescribeLimitExit(limits, exited,
                              {"fatal error: runtime: out of memory"}),
            "memory limit 64MiB (limits.address_space) reached?");
  EXPECT_EQ(DescribeLimitExit(limits, exited, {"bye"}), "");
  ExitStatus xcpu{true, 0, SIGXCPU, false};
  EXPECT_EQ(DescribeLimitExit(limits, xcpu, {}),
            "CPU limit 2s (limits.cpu_seconds) reached");
  EXPECT_EQ(DescribeLimitExit(ResourceLimits{}, abort_status, {}), "");
}

// As root: run the plugin as a throwaway user; its uid and gid are that
// user's, it serves through the stable socket path, and its private socket
// directory is gone after it stops.
class RunAsTest : public ExecGuardTest {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "not root (uid " << ::geteuid()
                   << "): running a plugin as another user needs root";
    }
    ExecGuardTest::SetUp();
    user_ = absl::StrCat("plugdt", ::getpid() % 100000);
    const std::string out =
        Shell(absl::StrCat("useradd --system --no-create-home --shell "
                           "/usr/sbin/nologin ",
                           user_, " 2>&1; echo rc=$?"));
    ASSERT_TRUE(absl::EndsWith(out, "rc=0")) << out;
    created_ = true;
  }
  void TearDown() override {
    if (::geteuid() != 0) return;
    ExecGuardTest::TearDown();
    if (created_) Shell(absl::StrCat("userdel ", user_, " 2>&1"));
  }
  std::string user_;
  bool created_ = false;
};

TEST_F(RunAsTest, PluginRunsAsTheUserAndServes) {
  absl::StatusOr<RunAs> ids = LookUpRunAs(user_, "");
  ASSERT_TRUE(ids.ok()) << ids.status();
  ASSERT_NE(ids->uid, 0u);
  LaunchOptions options = Options("runas");
  options.command = {CopyOfRawPlugin("plugd-runas"), "--mode=ok"};
  options.executable_sha256 = PinOf(options.command[0]);
  options.working_dir = work_;
  options.run_as = *ids;
  auto plugin = Launch(options);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  const pid_t pid = (*plugin)->pid();
  // The child changed its user on a copy of the launcher's memory, which
  // therefore stays dumpable (plugd/broker/spawn.h).
  EXPECT_EQ(::prctl(PR_GET_DUMPABLE), 1);
  const std::string uid = absl::StrCat(ids->uid);
  const std::string gid = absl::StrCat(ids->gid);
  EXPECT_EQ(StatusField(pid, "Uid:"),
            absl::StrCat(uid, "\t", uid, "\t", uid, "\t", uid));
  EXPECT_EQ(StatusField(pid, "Gid:"),
            absl::StrCat(gid, "\t", gid, "\t", gid, "\t", gid));
  // Its socket lives in a directory of its own; socket_path links to it.
  const std::string address = (*plugin)->handshake().address;
  EXPECT_THAT(address, HasSubstr(absl::StrCat("/tmp/plugd-u", uid, ".")));
  struct stat st;
  ASSERT_EQ(::stat(std::filesystem::path(address).parent_path().c_str(), &st),
            0);
  EXPECT_EQ(st.st_uid, ids->uid);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(std::filesystem::read_symlink(options.socket_path).string(),
            address);
  // A host connects through the stable path (a symlink into that
  // directory).
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(absl::StrCat("unix:", options.socket_path),
                          grpc::InsecureChannelCredentials());
  ASSERT_TRUE(channel->WaitForConnected(
      absl::ToChronoTime(absl::Now() + absl::Seconds(10))));
  const std::string run_dir =
      std::filesystem::path(address).parent_path().string();
  (*plugin)->Stop();
  EXPECT_FALSE(std::filesystem::exists(run_dir)) << run_dir;
}

TEST_F(RunAsTest, UnreachableWorkingDirSaysWhy) {
  absl::StatusOr<RunAs> ids = LookUpRunAs(user_, "");
  ASSERT_TRUE(ids.ok()) << ids.status();
  LaunchOptions options = Options("noentry");
  options.working_dir = dir_;  // the launcher's private socket dir (0700)
  options.run_as = *ids;
  auto plugin = Launch(options);
  ASSERT_FALSE(plugin.ok());
  EXPECT_EQ(plugin.status().code(), absl::StatusCode::kPermissionDenied)
      << plugin.status();
  EXPECT_THAT(std::string(plugin.status().message()),
              HasSubstr("chdir to the working directory"));
  EXPECT_THAT(std::string(plugin.status().message()),
              HasSubstr(absl::StrCat("user ", user_)));
}

}  // namespace
}  // namespace plugd::broker
