// Tests for the config loader (broker/config): the documented example,
// defaults, path resolution, every error case with its exact line, the file
// loader, and a small fuzz run.
#include "plugd/broker/config.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/duration.pb.h"
#include "gtest/gtest.h"

namespace plugd::broker {
namespace {

using ::testing::HasSubstr;

constexpr char kFile[] = "test.yaml";
constexpr char kBase[] = "/etc/plugd";

// The example from the task and docs/config.md.
constexpr char kMinimal[] = R"yaml(admin: unix:/tmp/plugd/admin.sock
plugins:
  - name: random
    command: [build/bin/plugd-random]
    restart: always          # always | on-failure | never
    env: {LOG_LEVEL: debug}
    start_timeout: 5s
    stop_timeout: 5s
    backoff: {initial: 100ms, max: 30s, multiplier: 2}
    max_restarts: 5
    restart_window: 60s
)yaml";

absl::StatusOr<v1::BrokerConfig> Parse(absl::string_view yaml,
                                       const std::string& base = kBase) {
  return ParseConfig(yaml, kFile, base);
}

absl::Duration ToAbsl(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// Sets an environment variable for the life of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value == nullptr) {
      unsetenv(name);
    } else {
      setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_.c_str(), old_.c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_;
  std::string old_;
  bool had_ = false;
};

// Expects `yaml` to fail with INVALID_ARGUMENT at `line` of test.yaml, with
// every fragment in the message.
void ExpectError(absl::string_view yaml, int line,
                 const std::vector<std::string>& fragments) {
  absl::StatusOr<v1::BrokerConfig> config = Parse(yaml);
  ASSERT_FALSE(config.ok()) << "parsed:\n" << yaml;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument)
      << config.status();
  const std::string message(config.status().message());
  EXPECT_TRUE(absl::StartsWith(message, absl::StrCat(kFile, ":", line, ":")))
      << "want line " << line << ", got: " << message;
  for (const std::string& fragment : fragments) {
    EXPECT_THAT(message, HasSubstr(fragment));
  }
}

TEST(ParseConfigTest, MinimalExample) {
  absl::StatusOr<v1::BrokerConfig> config = Parse(kMinimal);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->admin(), "unix:/tmp/plugd/admin.sock");
  EXPECT_EQ(config->socket_dir(), "/tmp/plugd");
  EXPECT_EQ(config->log_level(), "info");
  EXPECT_EQ(config->event_history(), 1000u);
  ASSERT_EQ(config->plugins_size(), 1);
  const v1::PluginConfig& p = config->plugins(0);
  EXPECT_EQ(p.name(), "random");
  EXPECT_THAT(p.command(),
              ::testing::ElementsAre("/etc/plugd/build/bin/plugd-random"));
  EXPECT_EQ(p.restart(), v1::RESTART_POLICY_ALWAYS);
  ASSERT_EQ(p.env().size(), 1u);
  EXPECT_EQ(p.env().at("LOG_LEVEL"), "debug");
  EXPECT_EQ(ToAbsl(p.start_timeout()), absl::Seconds(5));
  EXPECT_EQ(ToAbsl(p.stop_timeout()), absl::Seconds(5));
  EXPECT_EQ(ToAbsl(p.backoff().initial()), absl::Milliseconds(100));
  EXPECT_EQ(ToAbsl(p.backoff().max()), absl::Seconds(30));
  EXPECT_EQ(p.backoff().multiplier(), 2.0);
  EXPECT_EQ(p.max_restarts(), 5u);
  EXPECT_EQ(ToAbsl(p.restart_window()), absl::Seconds(60));
  EXPECT_EQ(p.working_dir(), "/etc/plugd");
}

TEST(ParseConfigTest, DefaultsFillEverythingLeftOut) {
  ScopedEnv xdg("XDG_RUNTIME_DIR", "/run/user/1000");
  absl::StatusOr<v1::BrokerConfig> config =
      Parse("plugins:\n  - name: a\n    command: [plugd-a]\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->admin(), "unix:/run/user/1000/plugd/admin.sock");
  EXPECT_EQ(config->socket_dir(), "/run/user/1000/plugd");
  EXPECT_EQ(config->log_level(), "info");
  EXPECT_EQ(config->event_history(), 1000u);
  const v1::PluginConfig& p = config->plugins(0);
  EXPECT_EQ(p.command(0), "plugd-a");  // bare: found in PATH
  EXPECT_EQ(p.restart(), v1::RESTART_POLICY_ALWAYS);
  EXPECT_EQ(ToAbsl(p.start_timeout()), absl::Seconds(10));
  EXPECT_EQ(ToAbsl(p.stop_timeout()), absl::Seconds(5));
  EXPECT_EQ(ToAbsl(p.backoff().initial()), absl::Milliseconds(100));
  EXPECT_EQ(ToAbsl(p.backoff().max()), absl::Seconds(30));
  EXPECT_EQ(p.backoff().multiplier(), 2.0);
  EXPECT_TRUE(p.has_max_restarts());
  EXPECT_EQ(p.max_restarts(), 5u);
  EXPECT_EQ(ToAbsl(p.restart_window()), absl::Seconds(60));
  EXPECT_EQ(ToAbsl(p.health_interval()), absl::Seconds(1));
  EXPECT_EQ(ToAbsl(p.unhealthy_timeout()), absl::Seconds(5));
  EXPECT_EQ(ToAbsl(p.liveness_timeout()), absl::Seconds(5));
  EXPECT_EQ(p.working_dir(), "/etc/plugd");
  EXPECT_THAT(p.protocol_versions(), ::testing::ElementsAre(1u));
  EXPECT_EQ(p.max_message_bytes(), 64 << 20);
  EXPECT_EQ(p.log_buffer_bytes(), 1u << 20);
  EXPECT_EQ(p.log_line_bytes(), 16384u);
  EXPECT_EQ(p.log_rate_bytes(), 262144u);
  EXPECT_TRUE(p.has_autostart());
  EXPECT_TRUE(p.autostart());
}

TEST(ParseConfigTest, EmptyPluginListAndNullValuesAreFine) {
  ScopedEnv xdg("XDG_RUNTIME_DIR", nullptr);
  absl::StatusOr<v1::BrokerConfig> config =
      Parse("plugins:\nlog_level:\nadmin: ~\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->plugins_size(), 0);
  EXPECT_EQ(config->admin(),
            absl::StrCat("unix:/tmp/plugd-", getuid(), "/admin.sock"));
  EXPECT_EQ(config->socket_dir(), absl::StrCat("/tmp/plugd-", getuid()));
  EXPECT_EQ(config->log_level(), "info");
}

TEST(ParseConfigTest, ExplicitValuesWinOverDefaults) {
  absl::StatusOr<v1::BrokerConfig> config = Parse(R"yaml(admin: unix:/a/b.sock
socket_dir: sockets
log_level: debug
event_history: 7
plugins:
  - name: x.y_z-1
    command: [/bin/true, a, "b c"]
    restart: on-failure
    max_restarts: 0
    log_rate_bytes: 0
    autostart: false
    backoff: {initial: 0s, multiplier: 1.5}
    health_interval: 250ms
    unhealthy_timeout: 1m30s
    liveness_timeout: 2h
    protocol_versions: [2, 3]
    max_message_bytes: 1024
    log_buffer_bytes: 10
    log_line_bytes: 5
    working_dir: /srv
)yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->socket_dir(), "/etc/plugd/sockets");
  EXPECT_EQ(config->log_level(), "debug");
  EXPECT_EQ(config->event_history(), 7u);
  const v1::PluginConfig& p = config->plugins(0);
  EXPECT_THAT(p.command(), ::testing::ElementsAre("/bin/true", "a", "b c"));
  EXPECT_EQ(p.restart(), v1::RESTART_POLICY_ON_FAILURE);
  EXPECT_EQ(p.max_restarts(), 0u);  // no limit, kept
  EXPECT_EQ(p.log_rate_bytes(), 0u);
  EXPECT_FALSE(p.autostart());
  EXPECT_EQ(ToAbsl(p.backoff().initial()), absl::ZeroDuration());
  EXPECT_EQ(ToAbsl(p.backoff().max()), absl::Seconds(30));
  EXPECT_EQ(p.backoff().multiplier(), 1.5);
  EXPECT_EQ(ToAbsl(p.health_interval()), absl::Milliseconds(250));
  EXPECT_EQ(ToAbsl(p.unhealthy_timeout()), absl::Seconds(90));
  EXPECT_EQ(ToAbsl(p.liveness_timeout()), absl::Hours(2));
  EXPECT_THAT(p.protocol_versions(), ::testing::ElementsAre(2u, 3u));
  EXPECT_EQ(p.max_message_bytes(), 1024);
  EXPECT_EQ(p.log_buffer_bytes(), 10u);
  EXPECT_EQ(p.log_line_bytes(), 5u);
  EXPECT_EQ(p.working_dir(), "/srv");
}

TEST(ParseConfigTest, RestartPolicySpellings) {
  const std::pair<const char*, v1::RestartPolicy> cases[] = {
      {"always", v1::RESTART_POLICY_ALWAYS},
      {"on-failure", v1::RESTART_POLICY_ON_FAILURE},
      {"on_failure", v1::RESTART_POLICY_ON_FAILURE},
      {"On-Failure", v1::RESTART_POLICY_ON_FAILURE},
      {"never", v1::RESTART_POLICY_NEVER},
      {"RESTART_POLICY_NEVER", v1::RESTART_POLICY_NEVER},
  };
  for (const auto& [text, want] : cases) {
    absl::StatusOr<v1::BrokerConfig> config = Parse(absl::StrCat(
        "plugins:\n  - {name: a, command: [x], restart: ", text, "}\n"));
    ASSERT_TRUE(config.ok()) << text << ": " << config.status();
    EXPECT_EQ(config->plugins(0).restart(), want) << text;
  }
}

TEST(ParseConfigTest, RelativePathsResolveAgainstBaseDir) {
  absl::StatusOr<v1::BrokerConfig> config = Parse(R"yaml(plugins:
  - {name: a, command: [./a, ./arg]}
  - {name: b, command: [../bin/b], working_dir: run/b}
  - {name: c, command: [/usr/bin/c], working_dir: /var/c}
  - {name: d, command: [plugd-d]}
)yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->plugins(0).command(0), "/etc/plugd/a");
  EXPECT_EQ(config->plugins(0).command(1), "./arg");  // arguments untouched
  EXPECT_EQ(config->plugins(0).working_dir(), "/etc/plugd");
  EXPECT_EQ(config->plugins(1).command(0), "/etc/bin/b");
  EXPECT_EQ(config->plugins(1).working_dir(), "/etc/plugd/run/b");
  EXPECT_EQ(config->plugins(2).command(0), "/usr/bin/c");
  EXPECT_EQ(config->plugins(2).working_dir(), "/var/c");
  EXPECT_EQ(config->plugins(3).command(0), "plugd-d");
}

TEST(ParseConfigTest, EmptyBaseDirLeavesRelativePaths) {
  absl::StatusOr<v1::BrokerConfig> config =
      Parse("plugins:\n  - {name: a, command: [bin/a]}\n", "");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->plugins(0).command(0), "bin/a");
  EXPECT_EQ(config->plugins(0).working_dir(), "");
}

// The walk is driven by the descriptors: every field of every message is a
// key, with no list of fields in the loader.
TEST(ParseConfigTest, EveryFieldOfPluginConfigIsAKey) {
  const google::protobuf::Descriptor* d = v1::PluginConfig::descriptor();
  std::string yaml = "plugins:\n  - name: a\n    command: [x]\n";
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (f->name() == "name" || f->name() == "command") continue;
    std::string value;
    if (f->is_map()) {
      value = "{K: v}";
    } else if (f->cpp_type() ==
               google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      const std::string& type = f->message_type()->full_name();
      value = type == "google.protobuf.Duration" ? "3s"
              : type == "plugd.v1.GoPluginConfig"
                  ? "{magic_cookie_key: K, magic_cookie_value: v}"
                  : "{}";
    } else if (f->cpp_type() ==
               google::protobuf::FieldDescriptor::CPPTYPE_ENUM) {
      value = "never";
    } else if (f->cpp_type() ==
               google::protobuf::FieldDescriptor::CPPTYPE_BOOL) {
      value = "true";
    } else if (f->name() == "sha256") {
      value = absl::StrCat("sha256:", std::string(64, 'a'));
    } else if (f->name() == "user" || f->name() == "group") {
      if (geteuid() != 0) continue;  // needs root; see WhatMayRun tests
      value = "root";
    } else if (f->cpp_type() ==
               google::protobuf::FieldDescriptor::CPPTYPE_STRING) {
      value = "/s";
    } else {
      value = "3";
    }
    if (f->is_repeated() && !f->is_map()) value = absl::StrCat("[", value, "]");
    absl::StrAppend(&yaml, "    ", f->name(), ": ", value, "\n");
  }
  absl::StatusOr<v1::BrokerConfig> config = Parse(yaml);
  ASSERT_TRUE(config.ok()) << config.status() << "\n" << yaml;
}

TEST(ParseConfigTest, GoPluginEntry) {
  absl::StatusOr<v1::BrokerConfig> config = Parse(R"yaml(plugins:
  - name: tf
    command: [terraform-provider-x]
    protocol_versions: [5]
    go_plugin:
      magic_cookie_key: TF_PLUGIN_MAGIC_COOKIE
      magic_cookie_value: d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2
  - name: b
    command: [x]
    go_plugin: {magic_cookie_key: K, magic_cookie_value: v, min_port: 2000, max_port: 2100}
  - name: native
    command: [y]
)yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const v1::PluginConfig& tf = config->plugins(0);
  ASSERT_TRUE(tf.has_go_plugin());
  EXPECT_EQ(tf.go_plugin().magic_cookie_key(), "TF_PLUGIN_MAGIC_COOKIE");
  EXPECT_EQ(tf.go_plugin().min_port(), 10000u);  // go-plugin's defaults
  EXPECT_EQ(tf.go_plugin().max_port(), 25000u);
  EXPECT_EQ(tf.protocol_versions(0), 5u);
  EXPECT_EQ(config->plugins(1).go_plugin().min_port(), 2000u);
  EXPECT_EQ(config->plugins(1).go_plugin().max_port(), 2100u);
  EXPECT_FALSE(config->plugins(2).has_go_plugin());
}

TEST(ParseConfigTest, WhatMayRunKeys) {
  const std::string pin = absl::StrCat("sha256:", std::string(64, 'A'));
  absl::StatusOr<v1::BrokerConfig> config = Parse(absl::StrCat(R"yaml(plugins:
  - name: a
    command: [x]
    sha256: )yaml",
                                                               pin, R"yaml(
    limits: {address_space: 512MiB, open_files: 64, cpu_seconds: 10, processes: 100}
    inherit_environment: true
  - name: b
    command: [y]
    limits: {address_space: 1048576}
)yaml"));
  ASSERT_TRUE(config.ok()) << config.status();
  const v1::PluginConfig& a = config->plugins(0);
  EXPECT_EQ(a.sha256(), pin);
  EXPECT_EQ(a.limits().address_space(), "512MiB");
  EXPECT_EQ(a.limits().open_files(), 64u);
  EXPECT_EQ(a.limits().cpu_seconds(), 10u);
  EXPECT_EQ(a.limits().processes(), 100u);
  EXPECT_TRUE(a.inherit_environment());
  const v1::PluginConfig& b = config->plugins(1);
  EXPECT_EQ(b.limits().address_space(), "1048576");
  EXPECT_EQ(b.limits().open_files(), 0u);
  // The default: nothing of plugd's environment.
  EXPECT_TRUE(b.has_inherit_environment());
  EXPECT_FALSE(b.inherit_environment());
  EXPECT_TRUE(b.sha256().empty());
}

TEST(ParseConfigTest, UserAndGroupAsRoot) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  absl::StatusOr<v1::BrokerConfig> config = Parse(R"yaml(plugins:
  - name: a
    command: [x]
    user: root
    group: "0"
  - name: b
    command: [x]
    user: "0"
)yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->plugins(0).user(), "root");
  EXPECT_EQ(config->plugins(0).group(), "0");
}

// --- Errors -----------------------------------------------------------------

TEST(ConfigErrorTest, WhatMayRun) {
  ExpectError("plugins:\n  - name: a\n    command: [x]\n    sha256: abc\n", 4,
              {"plugins[0].sha256: invalid executable pin \"abc\"",
               "sha256:<64 hex digits>", "sha256sum FILE"});
  ExpectError(
      absl::StrCat("plugins:\n  - name: a\n    command: [x]\n    sha256: "
                   "sha256:",
                   std::string(63, 'a'), "\n"),
      4, {"plugins[0].sha256:", "it has 63 hex digits, not 64"});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    limits:\n"
      "      address_space: 12XB\n",
      5,
      {"plugins[0].limits.address_space: invalid byte size \"12XB\"",
       "e.g. 512MiB"});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    limits:\n"
      "      address_space: 0MiB\n",
      5, {"plugins[0].limits.address_space: must be more than 0 bytes"});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    limits: {open_files: 0}\n",
      4, {"plugins[0].limits.open_files: must be at least 1"});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    limits: {cpu_seconds: "
      "-1}\n",
      4, {"plugins[0].limits.cpu_seconds"});
  ExpectError("plugins:\n  - name: a\n    command: [x]\n    group: root\n", 4,
              {"plugins[0].group: group needs user"});
  if (geteuid() == 0) {
    ExpectError(
        "plugins:\n  - name: a\n    command: [x]\n    user: no-such-user-x\n",
        4, {"plugins[0].user: unknown user \"no-such-user-x\""});
    ExpectError(
        "plugins:\n  - name: a\n    command: [x]\n    user: root\n"
        "    group: no-such-group-x\n",
        5, {"plugins[0].group: unknown group \"no-such-group-x\""});
  }
}

// Not root: user/group is a config error. As root, the check runs in a child
// that has dropped to an unprivileged uid.
TEST(ConfigErrorTest, UserNeedsRoot) {
  const std::string yaml =
      "plugins:\n  - name: a\n    command: [x]\n    user: root\n";
  if (geteuid() != 0) {
    ExpectError(yaml, 4,
                {"plugins[0].user: running a plugin as another user "
                 "needs plugd to run as root"});
    return;
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    if (setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0) {
      _exit(2);
    }
    absl::StatusOr<v1::BrokerConfig> config = Parse(yaml);
    const std::string message =
        config.ok() ? "parsed" : std::string(config.status().message());
    ssize_t ignored = write(fds[1], message.data(), message.size());
    (void)ignored;
    _exit(0);
  }
  close(fds[1]);
  std::string message;
  char buffer[1024];
  ssize_t n;
  while ((n = read(fds[0], buffer, sizeof(buffer))) > 0)
    message.append(buffer, n);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(absl::StartsWith(message, "test.yaml:4:")) << message;
  EXPECT_THAT(message, HasSubstr("plugins[0].user: running a plugin as "
                                 "another user needs plugd to run as root, "
                                 "but it runs as uid 65534"));
}

TEST(ConfigErrorTest, GoPluginEntries) {
  ExpectError("plugins:\n  - name: a\n    command: [x]\n    go_plugin: {}\n", 4,
              {"plugins[0].go_plugin: missing magic_cookie_key; copy "
               "MagicCookieKey and MagicCookieValue from the plugin's "
               "plugin.HandshakeConfig"});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    go_plugin:\n"
      "      magic_cookie_key: K\n",
      5, {"plugins[0].go_plugin: missing magic_cookie_value"});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    go_plugin:\n"
      "      magic_cookie_key: A=B\n      magic_cookie_value: v\n",
      5,
      {"plugins[0].go_plugin.magic_cookie_key: invalid environment variable "
       "name \"A=B\""});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    go_plugin:\n"
      "      {magic_cookie_key: K, magic_cookie_value: v, max_port: 70000}\n",
      5, {"plugins[0].go_plugin.max_port: 70000 is not a TCP port"});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    go_plugin:\n"
      "      {magic_cookie_key: K, magic_cookie_value: v, min_port: 30000}\n",
      5,
      {"plugins[0].go_plugin.min_port: min_port (30000) is above max_port "
       "(25000)"});
}

TEST(ConfigErrorTest, UnknownKeySuggestsTheClosest) {
  ExpectError(
      R"yaml(plugins:
  - name: random
    comand: [x]
)yaml",
      3,
      {"test.yaml:3:5: plugins[0]: unknown key \"comand\"",
       "did you mean \"command\"?", "allowed here: name, command, restart,"});
  ExpectError("plugins:\n  - name: a\n    command: [x]\n    maxRestarts: 3\n",
              4, {"did you mean \"max_restarts\"?"});
  ExpectError("admn: unix:/a\n", 1,
              {"unknown key \"admn\"", "did you mean \"admin\"?",
               "allowed at the top level: admin, socket_dir, log_level, "
               "plugins, event_history"});
}

TEST(ConfigErrorTest, UnknownKeyWithoutSuggestion) {
  ExpectError("admin: unix:/a\nbananas: 3\n", 2,
              {"unknown key \"bananas\"", "allowed at the top level"});
}

TEST(ConfigErrorTest, KeyAtTheWrongLevelSaysWhereItBelongs) {
  ExpectError(R"yaml(plugins:
  - name: a
    command: [x]
    initial: 1s
)yaml",
              4,
              {"unknown key \"initial\"", "it is a key of plugins[].backoff",
               "check the indentation"});
}

TEST(ConfigErrorTest, DuplicateKeys) {
  ExpectError(
      "admin: unix:/a\nlog_level: info\nadmin: unix:/b\n", 3,
      {"test.yaml:3:1:", "duplicate key \"admin\"", "first written at line 1"});
  ExpectError(R"yaml(plugins:
  - name: a
    command: [x]
    name: b
)yaml",
              4, {"plugins[0]: duplicate key \"name\"", "line 2"});
  ExpectError(R"yaml(plugins:
  - name: a
    command: [x]
    env:
      A: 1
      A: 2
)yaml",
              6, {"plugins[0].env: duplicate key \"A\"", "line 5"});
}

TEST(ConfigErrorTest, WrongTypes) {
  ExpectError(R"yaml(plugins:
  - name: a
    command: [x]
    max_restarts: five
)yaml",
              4,
              {"test.yaml:4:19: plugins[0].max_restarts: expected a "
               "non-negative integer, got \"five\""});
  ExpectError("plugins: {name: a}\n", 1,
              {"test.yaml:1:10: plugins: expected a list of mappings, got a "
               "mapping"});
  ExpectError("plugins:\n  - name: a\n    command: plugd-a --verbose\n", 3,
              {"plugins[0].command: expected a list of strings, got "
               "\"plugd-a --verbose\"",
               "write it as a list: [plugd-a, --verbose]"});
  ExpectError("plugins:\n  - name: [a]\n    command: [x]\n", 2,
              {"plugins[0].name: expected a string, got a list"});
  ExpectError("plugins:\n  - {name: a, command: [x], autostart: maybe}\n", 2,
              {"autostart: expected true or false, got \"maybe\""});
  ExpectError("plugins:\n  - {name: a, command: [x], env: [A=1]}\n", 2,
              {"env: expected a mapping like {KEY: value}, got a list"});
  ExpectError("plugins:\n  - {name: a, command: [x], backoff: 5s}\n", 2,
              {"backoff: expected a mapping with keys initial, max, "
               "multiplier, got \"5s\""});
  // yaml-cpp gives an empty item no position: the list's is used.
  ExpectError("plugins:\n  - {name: a, command: [x]}\n  -\n", 2,
              {"plugins[1]: expected a mapping", "got an empty list item"});
  ExpectError("{[a]: 1}\n", 1, {"keys must be plain words"});
  ExpectError(
      "plugins:\n  - {name: a, command: [x], backoff: {multiplier: lots}}\n", 2,
      {"plugins[0].backoff.multiplier: expected a number, got \"lots\""});
}

TEST(ConfigErrorTest, UnknownEnumValueListsTheAcceptedOnes) {
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    restart: sometimes\n", 4,
      {"plugins[0].restart: expected one of always, on-failure, "
       "never, got \"sometimes\""});
  ExpectError("plugins:\n  - name: a\n    command: [x]\n    restart: allways\n",
              4, {"did you mean \"always\"?"});
}

TEST(ConfigErrorTest, Durations) {
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    start_timeout: 5\n", 4,
      {"plugins[0].start_timeout: \"5\" has no unit; add one, e.g. 5s"});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    stop_timeout: -1s\n", 4,
      {"plugins[0].stop_timeout: must not be negative"});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    restart_window: soon\n", 4,
      {"expected a duration like 100ms, 5s, 1m30s or 2h, got \"soon\""});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    stop_timeout: inf\n", 4,
      {"expected a duration"});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    start_timeout: 0s\n", 4,
      {"plugins[0].start_timeout: must be longer than 0s"});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    start_timeout: "
      "9999999999h\n",
      4, {"is out of range"});
}

TEST(ConfigErrorTest, DuplicatePluginNameCitesBothLines) {
  ExpectError(R"yaml(plugins:
  - name: random
    command: [x]
  - name: other
    command: [y]
  - name: random
    command: [z]
)yaml",
              6,
              {"test.yaml:6:11: plugins[2].name: duplicate plugin name "
               "\"random\", already used by plugins[0] at line 2"});
}

TEST(ConfigErrorTest, MissingOrEmptyCommand) {
  ExpectError("plugins:\n  - name: a\n    restart: never\n", 2,
              {"plugins[0]: plugin \"a\" has no command",
               "command: [/usr/bin/plugd-a"});
  ExpectError("plugins:\n  - name: a\n    command: []\n", 3,
              {"plugins[0].command: plugin \"a\" has no command"});
  ExpectError("plugins:\n  - name: a\n    command:\n", 3,
              {"plugins[0].command: plugin \"a\" has no command"});
  ExpectError("plugins:\n  - name: a\n    command: [\"\", x]\n", 3,
              {"plugins[0].command[0]: the executable is empty"});
}

TEST(ConfigErrorTest, PluginNames) {
  ExpectError("plugins:\n  - command: [x]\n", 2, {"plugins[0]: missing name"});
  ExpectError("plugins:\n  - command: [x]\n    name: my/plugin\n", 3,
              {"plugins[0].name: invalid plugin name \"my/plugin\"",
               "letters, digits, '-', '_' and '.'", "at most 64"});
  ExpectError(absl::StrCat("plugins:\n  - command: [x]\n    name: ",
                           std::string(65, 'a'), "\n"),
              3, {"invalid plugin name"});
  ExpectError("plugins:\n  - command: [x]\n    name: ..\n", 3,
              {"invalid plugin name"});
  EXPECT_TRUE(Parse(absl::StrCat("plugins:\n  - command: [x]\n    name: ",
                                 std::string(64, 'a'), "\n"))
                  .ok());
}

TEST(ConfigErrorTest, YamlSyntaxError) {
  ExpectError("admin: unix:/a\nplugins: [\n  {name: a\n", 4,
              {"YAML syntax error"});
  ExpectError("plugins:\n  - name: a\n   command: [x]\n", 3,
              {"YAML syntax error"});
  ExpectError("admin: \"a\" b\n", 1, {"YAML syntax error"});
}

TEST(ConfigErrorTest, EmptyOrNotAMapping) {
  ExpectError("", 1, {"the config is empty", "admin, socket_dir"});
  ExpectError("# only a comment\n\n", 1, {"the config is empty"});
  ExpectError("- a\n- b\n", 1, {"the top level must be a mapping", "a list"});
  ExpectError("hello\n", 1,
              {"the top level must be a mapping", "got \"hello\""});
  ExpectError("admin: unix:/a\n---\nadmin: unix:/b\n", 2,
              {"one YAML document"});
}

TEST(ConfigErrorTest, Backoff) {
  ExpectError(R"yaml(plugins:
  - name: a
    command: [x]
    backoff:
      multiplier: 0.5
)yaml",
              5,
              {"plugins[0].backoff.multiplier: must be at least 1, got 0.5"});
  ExpectError(
      "plugins:\n  - {name: a, command: [x], backoff: {multiplier: 0}}\n", 2,
      {"must be at least 1, got 0"});
  ExpectError(R"yaml(plugins:
  - name: a
    command: [x]
    backoff:
      initial: 1m
      max: 10s
)yaml",
              5,
              {"plugins[0].backoff.initial: the initial backoff (1m) is "
               "longer than the max backoff (10s)",
               "raise max or lower initial"});
  // Against the default max (30s).
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    backoff: {initial: 45s}\n",
      4, {"(45s) is longer than the max backoff (30s)"});
}

TEST(ConfigErrorTest, OutOfRangeIntegers) {
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    max_restarts: "
      "99999999999\n",
      4,
      {"plugins[0].max_restarts: 99999999999 is out of range: expected a "
       "non-negative integer from 0 to 4294967295"});
  ExpectError("plugins:\n  - name: a\n    command: [x]\n    max_restarts: -1\n",
              4, {"expected a non-negative integer, got \"-1\""});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    max_message_bytes: "
      "4294967296\n",
      4, {"plugins[0].max_message_bytes: 4294967296 is out of range"});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    max_restarts: 2.5\n", 4,
      {"expected a non-negative integer, got \"2.5\""});
  ExpectError("event_history: 0\n", 1, {"event_history: must be at least 1"});
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    protocol_versions: [1, "
      "0]\n",
      4, {"plugins[0].protocol_versions[1]: protocol versions start at 1"});
}

TEST(ConfigErrorTest, AdminAddress) {
  ExpectError("log_level: info\nadmin: tcp://0.0.0.0:1234\n", 2,
              {"admin: \"tcp://0.0.0.0:1234\" is not a Unix socket address",
               "unix:/path/to/admin.sock"});
  ExpectError("admin: \"unix:\"\n", 1, {"the socket path is empty"});
  ExpectError(absl::StrCat("admin: unix:/", std::string(120, 'x'), "\n"), 1,
              {"over the 107-byte limit"});
  EXPECT_TRUE(Parse("admin: unix:///tmp/a.sock\n").ok());
}

TEST(ConfigErrorTest, LogLevel) {
  ExpectError("log_level: loud\n", 1,
              {"log_level: expected one of debug, info, warn, error, got "
               "\"loud\""});
}

TEST(ConfigErrorTest, SocketPathTooLong) {
  ExpectError(absl::StrCat("socket_dir: /", std::string(60, 's'),
                           "\nplugins:\n  - name: ", std::string(50, 'n'),
                           "\n    command: [x]\n"),
              3, {"socket path", "over the 107-byte limit"});
}

TEST(ConfigErrorTest, EnvironmentAndStrings) {
  ExpectError(
      "plugins:\n  - name: a\n    command: [x]\n    env: {\"A=B\": 1}\n", 4,
      {"invalid environment variable name \"A=B\""});
  ExpectError("plugins:\n  - name: a\n    command: [\"x\\0y\"]\n", 3,
              {"plugins[0].command[0]: contains a NUL character"});
  ExpectError("admin: \"unix:/\xff\xfe\"\n", 1, {"admin: is not valid UTF-8"});
}

TEST(ConfigErrorTest, MergeKeysAreRejectedClearly) {
  ExpectError(R"yaml(common: &common {restart: never}
plugins:
  - <<: *common
    name: a
)yaml",
              1, {"unknown key \"common\""});
  ExpectError(R"yaml(plugins:
  - <<: {restart: never}
    name: a
)yaml",
              2, {"unknown key \"<<\"", "merge keys are not supported"});
}

TEST(ConfigErrorTest, AliasCycleDoesNotRecurseForever) {
  absl::StatusOr<v1::BrokerConfig> config = Parse("plugins: &a [*a]\n");
  EXPECT_FALSE(config.ok());
  config = Parse("plugins:\n  - &p {name: a, backoff: *p}\n");
  EXPECT_FALSE(config.ok());
}

// --- ApplyDefaults and DefaultAdminAddress
// ------------------------------------

TEST(ApplyDefaultsTest, OnlyUnsetFieldsAndIdempotent) {
  v1::BrokerConfig config;
  config.set_admin("unix:/x/admin.sock");
  v1::PluginConfig* plugin = config.add_plugins();
  plugin->set_restart(v1::RESTART_POLICY_NEVER);
  plugin->mutable_stop_timeout()->set_seconds(1);
  plugin->mutable_backoff()->set_multiplier(3);
  plugin->set_max_restarts(0);
  config.add_plugins();
  ApplyDefaults(&config);
  v1::BrokerConfig again = config;
  ApplyDefaults(&again);
  EXPECT_EQ(again.DebugString(), config.DebugString());

  EXPECT_EQ(config.socket_dir(), "/x");
  EXPECT_EQ(config.plugins(0).restart(), v1::RESTART_POLICY_NEVER);
  EXPECT_EQ(config.plugins(0).stop_timeout().seconds(), 1);
  EXPECT_EQ(config.plugins(0).backoff().multiplier(), 3);
  EXPECT_EQ(ToAbsl(config.plugins(0).backoff().max()), absl::Seconds(30));
  EXPECT_EQ(config.plugins(0).max_restarts(), 0u);
  EXPECT_EQ(config.plugins(1).max_restarts(), 5u);
  EXPECT_EQ(config.plugins(1).restart(), v1::RESTART_POLICY_ALWAYS);
  EXPECT_EQ(config.plugins(1).working_dir(), "");
}

TEST(DefaultAdminAddressTest, XdgRuntimeDirThenTmp) {
  {
    ScopedEnv xdg("XDG_RUNTIME_DIR", "/run/user/42");
    EXPECT_EQ(DefaultAdminAddress(), "unix:/run/user/42/plugd/admin.sock");
  }
  {
    ScopedEnv xdg("XDG_RUNTIME_DIR", "");
    EXPECT_EQ(DefaultAdminAddress(),
              absl::StrCat("unix:/tmp/plugd-", getuid(), "/admin.sock"));
  }
  {
    ScopedEnv xdg("XDG_RUNTIME_DIR", nullptr);
    EXPECT_EQ(DefaultAdminAddress(),
              absl::StrCat("unix:/tmp/plugd-", getuid(), "/admin.sock"));
  }
}

// --- LoadConfigFile
// ------------------------------------------------------------

class LoadConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/plugd-config-test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  std::string dir_;
};

TEST_F(LoadConfigFileTest, LoadsAndResolvesAgainstTheFilesDirectory) {
  const std::string path = Write("plugd.yaml", kMinimal);
  absl::StatusOr<v1::BrokerConfig> config = LoadConfigFile(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->plugins(0).command(0), dir_ + "/build/bin/plugd-random");
  EXPECT_EQ(config->plugins(0).working_dir(), dir_);
}

TEST_F(LoadConfigFileTest, RelativeFilePathUsesTheCurrentDirectory) {
  Write("plugd.yaml", kMinimal);
  const std::filesystem::path cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir_);
  absl::StatusOr<v1::BrokerConfig> config = LoadConfigFile("plugd.yaml");
  std::filesystem::current_path(cwd);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->plugins(0).working_dir(), dir_);
}

TEST_F(LoadConfigFileTest, ErrorsNameTheFile) {
  const std::string path =
      Write("bad.yaml", "admin: unix:/a\nadmin: unix:/b\n");
  absl::StatusOr<v1::BrokerConfig> config = LoadConfigFile(path);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(config.status().message(), path + ":2:1:"))
      << config.status();
}

TEST_F(LoadConfigFileTest, MissingFileIsNotFound) {
  absl::StatusOr<v1::BrokerConfig> config = LoadConfigFile(dir_ + "/nope.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(), HasSubstr("nope.yaml"));
  EXPECT_THAT(config.status().message(),
              HasSubstr("No such file or directory"));
}

TEST_F(LoadConfigFileTest, DirectoryIsInvalid) {
  absl::StatusOr<v1::BrokerConfig> config = LoadConfigFile(dir_);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("is a directory"));
}

// --- Robustness
// -----------------------------------------------------------------

// Checks the loader's contract on any input: it returns, and an error names
// the file.
void ExpectNoCrash(const std::string& input) {
  absl::StatusOr<v1::BrokerConfig> config = Parse(input);
  if (!config.ok()) {
    EXPECT_TRUE(absl::StartsWith(config.status().message(), kFile))
        << config.status();
  }
}

// yaml-cpp 0.7's LoadAll loops forever, allocating, on these.
TEST(ConfigFuzzTest, StrayCommasDoNotHang) {
  ExpectError(",", 1, {"YAML syntax error"});
  ExpectError("  ,", 1, {"test.yaml:1:3: YAML syntax error"});
  ExpectError("- a\n,", 2, {"YAML syntax error"});
  ExpectError("[a], b", 1, {"test.yaml:1:4: YAML syntax error"});
  ExpectError("admin: unix:/a\n,\n", 2, {"YAML syntax error"});
}

TEST(ConfigFuzzTest, DeepNesting) {
  ExpectNoCrash(std::string(100000, '['));
  ExpectNoCrash(std::string(100000, '{'));
  std::string deep = "plugins:";
  for (int i = 0; i < 3000; ++i)
    absl::StrAppend(&deep, "\n", std::string(i, ' '), "- ");
  ExpectNoCrash(deep);
}

TEST(ConfigFuzzTest, RandomAndMutatedInputs) {
  std::mt19937 rng(20240611);
  const std::string corpus[] = {
      kMinimal,
      "plugins:\n  - {name: a, command: [./x], env: {A: 1}, backoff: {}}\n",
      "admin: unix:/a\nsocket_dir: s\nlog_level: warn\nevent_history: 3\n",
      "plugins: &a\n  - &b {name: a, command: [x]}\n  - *b\n",
  };
  const std::string alphabet =
      "abcdefghijklmnopqrstuvwxyz0123456789 :-[]{},&*!|>'\"#%@`?\n\t\\\x00\xff";
  auto pick = [&](size_t n) {
    return std::uniform_int_distribution<size_t>(0, n - 1)(rng);
  };
  // PLUGD_CONFIG_FUZZ_SCALE=100 runs a hundred times as many inputs.
  int scale = 1;
  if (const char* env = std::getenv("PLUGD_CONFIG_FUZZ_SCALE")) {
    scale = std::max(1, std::atoi(env));
  }
  int inputs = 0;
  // Random bytes and random YAML-ish characters.
  for (int i = 0; i < 300 * scale; ++i, ++inputs) {
    std::string input(pick(200), '\0');
    for (char& c : input) {
      c = i % 2 ? alphabet[pick(alphabet.size())]
                : static_cast<char>(pick(256));
    }
    ExpectNoCrash(input);
  }
  // Mutations of valid configs: flip, insert, delete, duplicate lines.
  for (int i = 0; i < 1200 * scale; ++i, ++inputs) {
    std::string input = corpus[pick(std::size(corpus))];
    const int edits = 1 + static_cast<int>(pick(4));
    for (int e = 0; e < edits && !input.empty(); ++e) {
      const size_t at = pick(input.size());
      switch (pick(5)) {
        case 0:
          input[at] = alphabet[pick(alphabet.size())];
          break;
        case 1:
          input.insert(at, 1, alphabet[pick(alphabet.size())]);
          break;
        case 2:
          input.erase(at, 1 + pick(5));
          break;
        case 3: {
          const size_t start = input.rfind('\n', at);
          const size_t end = input.find('\n', at);
          const size_t from = start == std::string::npos ? 0 : start + 1;
          input.insert(from, input.substr(from, end == std::string::npos
                                                    ? std::string::npos
                                                    : end - from + 1));
          break;
        }
        default:
          input[at] = static_cast<char>(pick(256));
      }
    }
    ExpectNoCrash(input);
  }
  EXPECT_GE(inputs, 1500);
}

}  // namespace
}  // namespace plugd::broker
