// Who may connect (docs/security.md), tested with a second uid: a throwaway
// system user (and a group for it) that this test creates when run as root
// and removes at the end, also when a test fails. Without root or useradd
// every test is skipped with the reason printed.
//
// The other user's calls run through `setpriv` (util-linux), which execs
// plugctl or plugd-test-call with that user's uid, gid and groups. The
// socket directories and sockets are loosened (0711 / 0666) after they are
// created, so that only the credential check stands in the way.
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "plugd/common/protocol.h"
#include "test_util.h"

namespace plugd::testing {
namespace {

constexpr absl::Duration kGuard = absl::Seconds(30);  // hang guard

bool Executable(const std::string& path) {
  return access(path.c_str(), X_OK) == 0;
}

std::string FindTool(const std::string& name) {
  for (const char* dir : {"/usr/sbin", "/usr/bin", "/sbin", "/bin"}) {
    std::string path = absl::StrCat(dir, "/", name);
    if (Executable(path)) return path;
  }
  return "";
}

// The throwaway user "plugdt<pid>", member (supplementary, not primary) of
// the throwaway group "plugdg<pid>". Removed by Remove(), which the test
// environment calls at the end.
struct ThrowawayUser {
  std::string name;
  std::string group;
  uid_t uid = 0;
  gid_t gid = 0;            // the user's primary group
  gid_t extra_gid = 0;      // "plugdg<pid>"
  std::string skip_reason;  // set when the tests cannot run here
  std::string error;        // set when creating the user failed

  void Create() {
    if (geteuid() != 0) {
      skip_reason = "not running as root: cannot create a second user";
      return;
    }
    for (const char* tool :
         {"useradd", "userdel", "groupadd", "groupdel", "setpriv"}) {
      if (FindTool(tool).empty()) {
        skip_reason = absl::StrCat(tool,
                                   " is missing (install passwd and "
                                   "util-linux)");
        return;
      }
    }
    RemoveLeftovers();
    name = absl::StrCat("plugdt", getpid());
    group = absl::StrCat("plugdg", getpid());
    CommandResult g = RunCommand({FindTool("groupadd"), "--system", group});
    if (g.exit_code != 0) {
      error = absl::StrCat("groupadd ", group, " failed: ", g.err);
      return;
    }
    CommandResult u = RunCommand(
        {FindTool("useradd"), "--system", "--no-create-home", "--no-user-group",
         "--shell", "/usr/sbin/nologin", "--groups", group, name});
    if (u.exit_code != 0) {
      RunCommand({FindTool("groupdel"), group});
      error = absl::StrCat("useradd ", name, " failed: ", u.err);
      return;
    }
    struct passwd* pw = getpwnam(name.c_str());
    struct group* gr = getgrnam(group.c_str());
    if (pw == nullptr || gr == nullptr) {
      Remove();
      error = "the new user or group cannot be looked up";
      return;
    }
    uid = pw->pw_uid;
    gid = pw->pw_gid;
    extra_gid = gr->gr_gid;
    std::cout << "[ created  ] throwaway user " << name << " (uid " << uid
              << ", gid " << gid << ", member of " << group << " gid "
              << extra_gid << ")\n";
  }

  void Remove() {
    if (name.empty()) return;
    RunCommand({FindTool("userdel"), name});
    RunCommand({FindTool("groupdel"), group});
    std::cout << "[ removed  ] throwaway user " << name << " and group "
              << group << "\n";
    name.clear();
  }

  // Users and groups of earlier runs that crashed before removing them:
  // "plugdt<pid>" / "plugdg<pid>" whose pid is gone.
  static void RemoveLeftovers() {
    for (const auto& [file, prefix, tool] :
         std::vector<std::tuple<std::string, std::string, std::string>>{
             {"/etc/passwd", "plugdt", "userdel"},
             {"/etc/group", "plugdg", "groupdel"}}) {
      std::ifstream in(file);
      std::string line;
      while (std::getline(in, line)) {
        std::string entry = line.substr(0, line.find(':'));
        int pid = 0;
        if (!absl::StartsWith(entry, prefix) ||
            !absl::SimpleAtoi(entry.substr(prefix.size()), &pid)) {
          continue;
        }
        if (kill(pid, 0) == 0 || errno != ESRCH) continue;
        RunCommand({FindTool(tool), entry});
      }
    }
  }

  // Runs `argv` as this user (its uid, gid and groups).
  CommandResult Run(const std::vector<std::string>& argv) const {
    std::vector<std::string> full = {FindTool("setpriv"), "--reuid=" + name,
                                     absl::StrCat("--regid=", gid),
                                     "--init-groups", "--"};
    full.insert(full.end(), argv.begin(), argv.end());
    return RunCommand(full, kGuard);
  }
};

ThrowawayUser* g_user = nullptr;

class UserEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    g_user = &user_;
    user_.Create();
  }
  void TearDown() override { user_.Remove(); }

 private:
  ThrowawayUser user_;
};

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!g_user->skip_reason.empty()) {
      std::cout << "[ SKIPPED  ] " << g_user->skip_reason << "\n";
      GTEST_SKIP() << g_user->skip_reason;
    }
    ASSERT_TRUE(g_user->error.empty()) << g_user->error;
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp: " << strerror(errno);
  }
  const ThrowawayUser& user() const { return *g_user; }
  TempDir dir_{0711};  // the other user may traverse it
};

// plugd with `config`, stopped (SIGTERM, exit 0 expected) at the end.
class Plugd {
 public:
  explicit Plugd(const std::string& config)
      : child_({"/bin/sh", "-c",
                absl::StrCat("exec ", Bin("plugd"), " --config ", config,
                             " 2>&1")}) {}
  // Waits for "serving the admin API"; false at EOF or the hang guard.
  bool WaitUntilServing() {
    std::string line;
    while (child_.ReadLine(&line, kGuard)) {
      output_ += line + "\n";
      if (absl::StrContains(line, "serving the admin API")) return true;
    }
    return false;
  }
  // SIGTERM, then waits for the exit; the exit status.
  int Stop() {
    kill(child_.pid(), SIGTERM);
    std::string line;
    while (child_.ReadLine(&line, kGuard)) output_ += line + "\n";  // EOF
    if (!WaitForPidGone(child_.pid(), kGuard)) return -1;
    return child_.Wait();
  }
  const std::string& output() const { return output_; }

 private:
  Child child_;
  std::string output_;
};

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

TEST_F(SecurityTest, AdminSocketRefusesOtherUidsUnlessInAdminGroup) {
  const std::string admin_dir = dir_.path() + "/a";
  const std::string socket = admin_dir + "/admin.sock";
  const std::string address = "unix:" + socket;
  const std::string base_config = absl::StrCat(
      "admin: ", address, "\nsocket_dir: ", dir_.path(), "/s\nplugins:\n",
      "  - name: random\n    command: [\"", Bin("plugd-random"), "\"]\n");
  const std::string config = dir_.path() + "/plugd.yaml";
  WriteFile(config, base_config);
  {
    Plugd plugd(config);
    ASSERT_TRUE(plugd.WaitUntilServing()) << plugd.output();
    // Only the credential check stands in the way.
    ASSERT_EQ(chmod(admin_dir.c_str(), 0755), 0);
    ASSERT_EQ(chmod(socket.c_str(), 0666), 0);

    CommandResult call = user().Run({Bin("plugd-test-call"), address, "list"});
    EXPECT_EQ(call.exit_code, 1) << call.out << call.err;
    EXPECT_TRUE(absl::StartsWith(call.out, "PERMISSION_DENIED: "))
        << call.out << call.err;
    EXPECT_TRUE(absl::StrContains(
        call.out, absl::StrCat("the plugd admin API at ", socket,
                               " refused the connection of uid ", user().uid)))
        << call.out;
    EXPECT_TRUE(absl::StrContains(call.out,
                                  "set admin_group in the plugd "
                                  "config"))
        << call.out;

    // plugctl says the same to the operator, with its exit code 1.
    CommandResult ctl =
        user().Run({Bin("plugctl"), "--broker", address, "list"});
    EXPECT_EQ(ctl.exit_code, 1) << ctl.out << ctl.err;
    EXPECT_TRUE(absl::StrContains(
        ctl.err, absl::StrCat("refused the connection of uid ", user().uid)))
        << ctl.err;

    // The broker's own user (root here) still may.
    CommandResult own =
        RunCommand({Bin("plugctl"), "--broker", address, "list"});
    EXPECT_EQ(own.exit_code, 0) << own.out << own.err;
    EXPECT_TRUE(absl::StrContains(own.out, "random")) << own.out;
    EXPECT_EQ(plugd.Stop(), 0) << plugd.output();
    EXPECT_TRUE(absl::StrContains(plugd.output(), "refused the connection"))
        << "the refusal is logged:\n"
        << plugd.output();
  }

  // admin_group names the user's (supplementary) group: it may call, and
  // the socket and its directory are given to the group; nothing else is
  // loosened this time.
  WriteFile(config,
            absl::StrCat("admin_group: ", user().group, "\n", base_config));
  {
    Plugd plugd(config);
    ASSERT_TRUE(plugd.WaitUntilServing()) << plugd.output();
    struct stat st;
    ASSERT_EQ(stat(socket.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    EXPECT_EQ(st.st_gid, user().extra_gid);
    ASSERT_EQ(stat(admin_dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0710u);
    EXPECT_EQ(st.st_gid, user().extra_gid);

    CommandResult call = user().Run({Bin("plugd-test-call"), address, "list"});
    EXPECT_EQ(call.exit_code, 0) << call.out << call.err;
    EXPECT_EQ(call.out, "OK 1\n");
    CommandResult ctl =
        user().Run({Bin("plugctl"), "--broker", address, "list"});
    EXPECT_EQ(ctl.exit_code, 0) << ctl.out << ctl.err;
    EXPECT_TRUE(absl::StrContains(ctl.out, "random")) << ctl.out;
    EXPECT_EQ(plugd.Stop(), 0) << plugd.output();
  }

  // An unknown group is a config error (exit 2) that names the key.
  WriteFile(config, absl::StrCat("admin_group: no-such-group-", getpid(), "\n",
                                 base_config));
  CommandResult check =
      RunCommand({Bin("plugd"), "--config", config, "--check"});
  EXPECT_EQ(check.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(check.err, "admin_group: no group named"))
      << check.err;
}

// A plugin started by hand with the launch environment, as a launcher
// would start it; `launcher_uid` empty leaves PLUGD_LAUNCHER_UID unset.
class PluginProcess {
 public:
  PluginProcess(const std::string& bin, const std::string& socket,
                const std::string& launcher_uid)
      : child_(Argv(bin, socket, launcher_uid)) {}
  bool WaitForHandshake(std::string* line) {
    return child_.ReadLine(line, kGuard);
  }
  // SIGTERM; the exit status (0 after a graceful shutdown).
  int Stop() {
    kill(child_.pid(), SIGTERM);
    if (!WaitForPidGone(child_.pid(), kGuard)) return -1;
    return child_.Wait();
  }

 private:
  static std::vector<std::string> Argv(const std::string& bin,
                                       const std::string& socket,
                                       const std::string& launcher_uid) {
    std::vector<std::string> argv = {
        "/usr/bin/env",
        absl::StrCat(kEnvMagicCookieKey, "=", kMagicCookieValue),
        absl::StrCat(kEnvSocket, "=", socket)};
    if (!launcher_uid.empty()) {
      argv.push_back(absl::StrCat(kEnvLauncherUid, "=", launcher_uid));
    } else {
      argv.push_back(absl::StrCat("--unset=", kEnvLauncherUid));
    }
    argv.push_back(bin);
    return argv;
  }
  Child child_;
};

void CheckPlugin(const ThrowawayUser& user, const std::string& dir,
                 const std::string& bin, const std::string& name) {
  const std::string socket = dir + "/" + name + ".sock";
  const std::string address = "unix:" + socket;
  {
    PluginProcess plugin(bin, socket, "");
    std::string handshake;
    ASSERT_TRUE(plugin.WaitForHandshake(&handshake));
    ASSERT_TRUE(absl::StrContains(handshake, socket)) << handshake;
    struct stat st;
    ASSERT_EQ(stat(socket.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u) << "the SDK's socket mode";
    ASSERT_EQ(chmod(socket.c_str(), 0666), 0);  // loosened by "mistake"

    CommandResult other =
        user.Run({Bin("plugd-test-call"), address, "describe"});
    EXPECT_EQ(other.exit_code, 1) << other.out << other.err;
    EXPECT_TRUE(absl::StartsWith(
        other.out, absl::StrCat("PERMISSION_DENIED: plugin ", name,
                                " refused the connection of uid ", user.uid)))
        << other.out << other.err;
    EXPECT_TRUE(absl::StrContains(other.out,
                                  "through the plugd broker or "
                                  "host that launched it"))
        << other.out;

    CommandResult owner =
        RunCommand({Bin("plugd-test-call"), address, "describe"});
    EXPECT_EQ(owner.exit_code, 0) << owner.out << owner.err;
    EXPECT_EQ(owner.out, absl::StrCat("OK ", name, "\n"));
    EXPECT_EQ(plugin.Stop(), 0) << "graceful shutdown after a refusal";
  }
  {
    // The launcher's uid from PLUGD_LAUNCHER_UID may call too.
    PluginProcess plugin(bin, socket, absl::StrCat(user.uid));
    std::string handshake;
    ASSERT_TRUE(plugin.WaitForHandshake(&handshake));
    ASSERT_EQ(chmod(socket.c_str(), 0666), 0);
    CommandResult launcher =
        user.Run({Bin("plugd-test-call"), address, "describe"});
    EXPECT_EQ(launcher.exit_code, 0) << launcher.out << launcher.err;
    EXPECT_EQ(plugin.Stop(), 0);
  }
}

TEST_F(SecurityTest, CppPluginRefusesOtherUids) {
  CheckPlugin(user(), dir_.path(), Bin("plugd-random"), "random");
}

TEST_F(SecurityTest, GoPluginRefusesOtherUids) {
  CheckPlugin(user(), dir_.path(), Bin("plugd-go-hash"), "hash");
}

}  // namespace
}  // namespace plugd::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new plugd::testing::UserEnvironment);
  plugd::testing::InstallNoLeftoverProcessesCheck();
  return RUN_ALL_TESTS();
}
