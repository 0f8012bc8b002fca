// The SDK end to end: the example plugins run as real processes, launched
// the way the plugd launcher does (environment, handshake on stdout), and
// called through generated stubs over their Unix sockets.
#include <google/protobuf/util/delimited_message_util.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "kv/v1/kv.grpc.pb.h"
#include "plugd/common/protocol.h"
#include "plugd/common/value.h"
#include "plugd/v1/plugin.grpc.pb.h"
#include "subprocess.h"

namespace plugd {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::plugd::testing::Subprocess;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Hang guard for every wait: generous, since a failing test should fail, not
// hang; passing tests wait for events and finish in milliseconds.
constexpr absl::Duration kHangGuard = absl::Seconds(20);

struct Running {
  Subprocess* process = nullptr;
  std::string socket;
  std::string handshake;
  std::shared_ptr<grpc::Channel> channel;
};

class PluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sdkt-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    // Subprocess's destructor SIGKILLs and reaps whatever still runs.
    processes_.clear();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // The environment a plugd launcher gives a plugin.
  std::map<std::string, std::string> LaunchEnv(const std::string& socket) {
    return {{"PATH", "/usr/bin:/bin"},
            {kEnvMagicCookieKey, kMagicCookieValue},
            {kEnvSocket, socket},
            {kEnvProtocolVersions, "1"}};
  }

  Subprocess* Spawn(const std::string& binary,
                    const std::map<std::string, std::string>& env,
                    const std::vector<std::string>& args = {}) {
    absl::StatusOr<std::unique_ptr<Subprocess>> p =
        Subprocess::Start(binary, args, env);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return nullptr;
    processes_.push_back(*std::move(p));
    return processes_.back().get();
  }

  // Launches a plugin, reads its handshake and connects to it.
  Running Launch(const std::string& binary,
                 std::map<std::string, std::string> extra_env = {},
                 const std::vector<std::string>& args = {}) {
    Running r;
    r.socket = absl::StrCat(dir_, "/p", ++launches_, ".sock");
    std::map<std::string, std::string> env = LaunchEnv(r.socket);
    for (auto& [k, v] : extra_env) env[k] = v;
    r.process = Spawn(binary, env, args);
    if (r.process == nullptr) return r;
    absl::StatusOr<std::string> line = r.process->ReadStdoutLine(kHangGuard);
    EXPECT_TRUE(line.ok()) << line.status();
    if (!line.ok()) return r;
    r.handshake = *line;
    r.channel = grpc::CreateChannel("unix:" + r.socket,
                                    grpc::InsecureChannelCredentials());
    return r;
  }

  static std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + kHangGuard));
    return ctx;
  }

  static plugd::v1::DescribeResponse Describe(const Running& r) {
    auto stub = plugd::v1::Control::NewStub(r.channel);
    plugd::v1::DescribeResponse response;
    grpc::Status s = stub->Describe(Ctx().get(), {}, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  static void ShutdownViaControl(const Running& r) {
    auto stub = plugd::v1::Control::NewStub(r.channel);
    plugd::v1::ShutdownRequest request;
    request.set_reason("test");
    plugd::v1::ShutdownResponse response;
    grpc::Status s = stub->Shutdown(Ctx().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }

  // Calls a function; returns the status, and the result in `result`.
  static grpc::Status Call(const Running& r, const std::string& function,
                           std::vector<google::protobuf::Value> args,
                           google::protobuf::Value* result = nullptr) {
    auto stub = plugd::v1::Functions::NewStub(r.channel);
    plugd::v1::CallRequest request;
    request.set_function(function);
    for (auto& a : args) *request.add_args() = std::move(a);
    plugd::v1::CallResponse response;
    grpc::Status s = stub->Call(Ctx().get(), request, &response);
    if (result != nullptr) *result = response.result();
    return s;
  }

  static double CallNumber(const Running& r, const std::string& function,
                           std::vector<google::protobuf::Value> args) {
    google::protobuf::Value result;
    grpc::Status s = Call(r, function, std::move(args), &result);
    EXPECT_TRUE(s.ok()) << function << ": " << s.error_message();
    return result.number_value();
  }

  std::string dir_;
  int launches_ = 0;
  std::vector<std::unique_ptr<Subprocess>> processes_;
};

google::protobuf::Value N(double n) { return NumberValue(n); }
google::protobuf::Value S(const std::string& s) { return StringValue(s); }

TEST_F(PluginTest, HandshakeAndDescribe) {
  Running r = Launch(PLUGD_RANDOM_BIN);
  ASSERT_NE(r.channel, nullptr);
  EXPECT_EQ(r.handshake, absl::StrCat("1|1|unix|", r.socket, "|grpc"));
  absl::StatusOr<Handshake> parsed = ParseHandshake(r.handshake);
  ASSERT_TRUE(parsed.ok()) << parsed.status();

  plugd::v1::DescribeResponse d = Describe(r);
  EXPECT_EQ(d.name(), "random");
  EXPECT_EQ(d.version(), "1.0.0");
  EXPECT_EQ(d.protocol_version(), 1u);
  EXPECT_EQ(d.core_protocol_version(), 1u);
  EXPECT_EQ(d.pid(), r.process->pid());
  std::vector<std::string> services(d.services().begin(), d.services().end());
  EXPECT_THAT(services, Contains("plugd.v1.Control"));
  EXPECT_THAT(services, Contains("plugd.v1.Functions"));
  EXPECT_THAT(services, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(services, Contains("grpc.reflection.v1alpha.ServerReflection"));
  ASSERT_EQ(d.functions_size(), 1);
  EXPECT_EQ(d.functions(0).name(), "random");
  EXPECT_EQ(d.functions(0).min_args(), 0u);
  EXPECT_EQ(d.functions(0).max_args(), 2);
  ASSERT_EQ(d.functions(0).params_size(), 2);
  EXPECT_EQ(d.functions(0).params(0).name(), "min");
  EXPECT_TRUE(d.functions(0).params(0).optional());
}

TEST_F(PluginTest, HealthServingForEmptyPluginAndServices) {
  Running r = Launch(PLUGD_RANDOM_BIN);
  ASSERT_NE(r.channel, nullptr);
  auto health = Health::NewStub(r.channel);
  for (const char* name :
       {"", "plugin", "plugd.v1.Control", "plugd.v1.Functions"}) {
    HealthCheckRequest request;
    request.set_service(name);
    HealthCheckResponse response;
    grpc::Status s = health->Check(Ctx().get(), request, &response);
    ASSERT_TRUE(s.ok()) << name << ": " << s.error_message();
    EXPECT_EQ(response.status(), HealthCheckResponse::SERVING) << name;
  }
  HealthCheckRequest unknown;
  unknown.set_service("no.such.Service");
  HealthCheckResponse response;
  EXPECT_EQ(health->Check(Ctx().get(), unknown, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Watch of an unknown name answers SERVICE_UNKNOWN (and stays open).
  auto ctx = Ctx();
  auto reader = health->Watch(ctx.get(), unknown);
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVICE_UNKNOWN);
  ctx->TryCancel();
  reader->Finish();
}

TEST_F(PluginTest, RandomFunction) {
  Running r = Launch(PLUGD_RANDOM_BIN);
  ASSERT_NE(r.channel, nullptr);
  const double x = CallNumber(r, "random", {});
  EXPECT_GE(x, 0);
  EXPECT_LE(x, 100);
  EXPECT_EQ(CallNumber(r, "random", {N(7), N(7)}), 7);
  const double y = CallNumber(r, "random", {N(-3), S("-1")});
  EXPECT_GE(y, -3);
  EXPECT_LE(y, -1);
  EXPECT_EQ(y, static_cast<int64_t>(y));

  grpc::Status s = Call(r, "random", {N(1), N(2), N(3)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "random: expected 0 to 2 arguments (random [MIN [MAX]]), got 3");
  s = Call(r, "random", {S("abc")});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("random: argument 1 (min)"));
  EXPECT_THAT(s.error_message(), HasSubstr("whole number"));
  s = Call(r, "random", {N(1), N(1.5)});
  EXPECT_THAT(s.error_message(), HasSubstr("argument 2 (max)"));
  s = Call(r, "random", {N(10), N(1)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("greater than MAX"));

  s = Call(r, "nope", {});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(),
            "no function \"nope\" in plugin random; it offers: random");
}

TEST_F(PluginTest, ArithFunctions) {
  Running r = Launch(PLUGD_ARITH_BIN);
  ASSERT_NE(r.channel, nullptr);
  EXPECT_EQ(CallNumber(r, "add", {N(1), N(2), N(3.5)}), 6.5);
  EXPECT_EQ(CallNumber(r, "add", {}), 0);
  EXPECT_EQ(CallNumber(r, "sub", {N(5), N(3)}), 2);
  EXPECT_EQ(CallNumber(r, "mul", {N(2), N(3), N(4)}), 24);
  EXPECT_EQ(CallNumber(r, "div", {N(7), N(2)}), 3.5);
  EXPECT_EQ(CallNumber(r, "pow", {N(2), N(10)}), 1024);
  EXPECT_EQ(CallNumber(r, "sqrt", {N(9)}), 3);

  grpc::Status s = Call(r, "div", {N(1), N(0)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "div: division by zero");
  s = Call(r, "sqrt", {N(-1)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("negative"));
  s = Call(r, "sub", {N(1)});
  EXPECT_EQ(s.error_message(), "sub: expected 2 arguments (sub A B), got 1");
  s = Call(r, "add", {N(1), S("x")});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("add: argument 2 (x) must be a number"));
  s = Call(r, "mod", {N(1), N(2)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(),
            "no function \"mod\" in plugin arith; it offers: add, div, mul, "
            "pow, sqrt, sub");

  auto stub = plugd::v1::Functions::NewStub(r.channel);
  plugd::v1::ListFunctionsResponse list;
  ASSERT_TRUE(stub->ListFunctions(Ctx().get(), {}, &list).ok());
  std::vector<std::string> names;
  for (const auto& f : list.functions()) names.push_back(f.name());
  EXPECT_THAT(names, ElementsAre("add", "div", "mul", "pow", "sqrt", "sub"));
  EXPECT_EQ(list.functions(0).max_args(), -1);
  EXPECT_FALSE(list.functions(0).help().empty());
}

TEST_F(PluginTest, RunByHandExplainsAndExits1) {
  Subprocess* p = Spawn(PLUGD_RANDOM_BIN, {{"PATH", "/usr/bin:/bin"}});
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->WaitExit(kHangGuard), 1);
  EXPECT_THAT(p->Stderr(),
              HasSubstr("This is a plugd plugin (random 1.0.0); it is not "
                        "meant to be run by hand."));
  EXPECT_THAT(p->Stderr(), HasSubstr("calc --plugin"));

  std::map<std::string, std::string> env = LaunchEnv(dir_ + "/x.sock");
  env[kEnvMagicCookieKey] = "wrong";
  p = Spawn(PLUGD_RANDOM_BIN, env);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->WaitExit(kHangGuard), 1);
  EXPECT_THAT(p->Stderr(), HasSubstr("not meant to be run by hand"));
}

TEST_F(PluginTest, NoCommonProtocolVersionExits1) {
  std::map<std::string, std::string> env = LaunchEnv(dir_ + "/x.sock");
  env[kEnvProtocolVersions] = "2,3";
  Subprocess* p = Spawn(PLUGD_RANDOM_BIN, env);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->WaitExit(kHangGuard), 1);
  EXPECT_THAT(p->Stderr(),
              HasSubstr("plugd plugin random: no protocol version in common: "
                        "the host supports [2,3], the plugin supports [1]"));
  EXPECT_FALSE(p->ReadStdoutLine(absl::ZeroDuration()).ok())
      << "printed a handshake";
}

TEST_F(PluginTest, MissingVersionListMeansVersion1) {
  Running r = Launch(PLUGD_RANDOM_BIN, {{kEnvProtocolVersions, ""}});
  ASSERT_NE(r.channel, nullptr);
  EXPECT_EQ(r.handshake, absl::StrCat("1|1|unix|", r.socket, "|grpc"));
}

TEST_F(PluginTest, MissingOrBadSocketExits1) {
  std::map<std::string, std::string> env = LaunchEnv("");
  env.erase(kEnvSocket);
  Subprocess* p = Spawn(PLUGD_RANDOM_BIN, env);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->WaitExit(kHangGuard), 1);
  EXPECT_THAT(p->Stderr(), HasSubstr("PLUGD_SOCKET is not set"));

  p = Spawn(PLUGD_RANDOM_BIN, LaunchEnv("relative.sock"));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->WaitExit(kHangGuard), 1);
  EXPECT_THAT(p->Stderr(), HasSubstr("PLUGD_SOCKET"));
}

TEST_F(PluginTest, ShutdownViaControlExits0AndRemovesSocket) {
  Running r = Launch(PLUGD_ARITH_BIN);
  ASSERT_NE(r.channel, nullptr);
  ShutdownViaControl(r);
  EXPECT_EQ(r.process->WaitExit(kHangGuard), 0) << r.process->Stderr();
  struct stat st;
  EXPECT_NE(lstat(r.socket.c_str(), &st), 0) << "socket file left behind";
  EXPECT_THAT(r.process->Stderr(), HasSubstr("Control.Shutdown: test"));
}

TEST_F(PluginTest, SigtermAndSigintExit0) {
  for (int signo : {SIGTERM, SIGINT}) {
    Running r = Launch(PLUGD_RANDOM_BIN);
    ASSERT_NE(r.channel, nullptr);
    r.process->Signal(signo);
    EXPECT_EQ(r.process->WaitExit(kHangGuard), 0) << r.process->Stderr();
  }
}

TEST_F(PluginTest, OpenHealthWatchDoesNotHoldShutdown) {
  // A grace period far longer than the hang guard: if the open Watch stream
  // held Server::Shutdown, the wait below would time out.
  Running r = Launch(PLUGD_RANDOM_BIN, {{kEnvShutdownGraceMs, "600000"}});
  ASSERT_NE(r.channel, nullptr);
  auto health = Health::NewStub(r.channel);
  auto ctx = Ctx();
  HealthCheckRequest request;
  request.set_service("plugin");
  auto reader = health->Watch(ctx.get(), request);
  HealthCheckResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);

  ShutdownViaControl(r);
  // The stream says NOT_SERVING, then ends. (The last update can be lost
  // when the SDK closes the idle connections right after the last call, so
  // only "nothing but NOT_SERVING, then an error status" is guaranteed.)
  std::vector<HealthCheckResponse::ServingStatus> seen;
  while (reader->Read(&response)) seen.push_back(response.status());
  grpc::Status end = reader->Finish();
  EXPECT_THAT(seen, ::testing::Each(HealthCheckResponse::NOT_SERVING));
  EXPECT_FALSE(end.ok());
  EXPECT_EQ(r.process->WaitExit(kHangGuard), 0) << r.process->Stderr();
}

TEST_F(PluginTest, KvStoreSurvivesRestart) {
  const std::string data = dir_ + "/kv.pb";
  Running r = Launch(PLUGD_KV_BIN, {}, {"--data", data});
  ASSERT_NE(r.channel, nullptr);
  plugd::v1::DescribeResponse d = Describe(r);
  EXPECT_EQ(d.name(), "kv");
  std::vector<std::string> services(d.services().begin(), d.services().end());
  EXPECT_THAT(services, Contains("kv.v1.KV"));
  EXPECT_THAT(services, Contains("plugd.v1.Control"));
  EXPECT_THAT(services, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(services, ::testing::Not(Contains("plugd.v1.Functions")));
  EXPECT_EQ(d.functions_size(), 0);
  {
    auto health = Health::NewStub(r.channel);
    HealthCheckRequest request;
    request.set_service("kv.v1.KV");
    HealthCheckResponse response;
    ASSERT_TRUE(health->Check(Ctx().get(), request, &response).ok());
    EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  }

  auto kv = kv::v1::KV::NewStub(r.channel);
  auto put = [&](const std::string& key, const std::string& value) {
    kv::v1::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    kv::v1::PutResponse response;
    return kv->Put(Ctx().get(), request, &response);
  };
  auto get = [&](const std::string& key, std::string* value) {
    kv::v1::GetRequest request;
    request.set_key(key);
    kv::v1::GetResponse response;
    grpc::Status s = kv->Get(Ctx().get(), request, &response);
    *value = response.value();
    return s;
  };
  ASSERT_TRUE(put("b/2", "two").ok());
  ASSERT_TRUE(put("a", std::string("\0bin", 4)).ok());
  ASSERT_TRUE(put("b/1", "one").ok());
  ASSERT_TRUE(put("c", "gone soon").ok());
  EXPECT_EQ(put("", "x").error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  std::string value;
  ASSERT_TRUE(get("b/1", &value).ok());
  EXPECT_EQ(value, "one");
  EXPECT_EQ(get("zzz", &value).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(get("", &value).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  kv::v1::ListRequest list_request;
  list_request.set_prefix("b/");
  kv::v1::ListResponse list;
  ASSERT_TRUE(kv->List(Ctx().get(), list_request, &list).ok());
  EXPECT_THAT(std::vector<std::string>(list.keys().begin(), list.keys().end()),
              ElementsAre("b/1", "b/2"));

  {
    auto ctx = Ctx();
    kv::v1::ScanRequest scan_request;
    auto reader = kv->Scan(ctx.get(), scan_request);
    std::vector<std::string> entries;
    kv::v1::Entry entry;
    while (reader->Read(&entry)) {
      entries.push_back(entry.key() + "=" + entry.value());
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_THAT(entries, ElementsAre(std::string("a=\0bin", 6), "b/1=one",
                                     "b/2=two", "c=gone soon"));
  }

  kv::v1::DeleteRequest del;
  del.set_key("c");
  kv::v1::DeleteResponse deleted;
  ASSERT_TRUE(kv->Delete(Ctx().get(), del, &deleted).ok());
  EXPECT_TRUE(deleted.existed());
  ASSERT_TRUE(kv->Delete(Ctx().get(), del, &deleted).ok());
  EXPECT_FALSE(deleted.existed());

  ShutdownViaControl(r);
  ASSERT_EQ(r.process->WaitExit(kHangGuard), 0) << r.process->Stderr();

  // Same data file, new process (data file named by the environment now).
  Running r2 = Launch(PLUGD_KV_BIN, {{"KV_DATA_FILE", data}});
  ASSERT_NE(r2.channel, nullptr);
  kv = kv::v1::KV::NewStub(r2.channel);
  ASSERT_TRUE(get("b/2", &value).ok());
  EXPECT_EQ(value, "two");
  ASSERT_TRUE(get("a", &value).ok());
  EXPECT_EQ(value, std::string("\0bin", 4));
  EXPECT_EQ(get("c", &value).error_code(), grpc::StatusCode::NOT_FOUND);
  r2.process->Signal(SIGTERM);
  EXPECT_EQ(r2.process->WaitExit(kHangGuard), 0);
}

TEST_F(PluginTest, KvCorruptDataFileExits1) {
  const std::string data = dir_ + "/kv.pb";
  std::ofstream(data) << "this is not a kv file";
  std::map<std::string, std::string> env = LaunchEnv(dir_ + "/kv.sock");
  Subprocess* p = Spawn(PLUGD_KV_BIN, env, {"--data=" + data});
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->WaitExit(kHangGuard), 1);
  EXPECT_THAT(p->Stderr(), HasSubstr("is corrupt"));
  EXPECT_THAT(p->Stderr(), HasSubstr(data));
}

TEST_F(PluginTest, OversizedMessageIsResourceExhausted) {
  Running r = Launch(PLUGD_KV_BIN, {{kEnvMaxMessageBytes, "4096"}},
                     {"--data", dir_ + "/kv.pb"});
  ASSERT_NE(r.channel, nullptr);
  auto kv = kv::v1::KV::NewStub(r.channel);
  kv::v1::PutRequest request;
  request.set_key("small");
  request.set_value(std::string(100, 'x'));
  kv::v1::PutResponse response;
  EXPECT_TRUE(kv->Put(Ctx().get(), request, &response).ok());
  request.set_key("big");
  request.set_value(std::string(16 * 1024, 'x'));
  grpc::Status s = kv->Put(Ctx().get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_message();
}

TEST_F(PluginTest, KvScanEndsEarlyWhenShuttingDown) {
  // A long grace period: the test passes only if Scan ends by itself.
  // Far more data than the HTTP/2 flow-control windows hold, so the server
  // is still writing when the shutdown begins. Written straight into the
  // data file (format: docs/sdk-cpp.md), which is much faster than Puts.
  constexpr int kEntries = 200;
  const std::string data = dir_ + "/kv.pb";
  {
    std::ofstream out(data, std::ios::binary);
    out << "plugd-kv 1\n";
    for (int i = 0; i < kEntries; ++i) {
      kv::v1::Entry entry;
      entry.set_key(absl::StrCat("k", 1000 + i));
      entry.set_value(std::string(32 * 1024, 'v'));
      ASSERT_TRUE(
          google::protobuf::util::SerializeDelimitedToOstream(entry, &out));
    }
  }
  Running r =
      Launch(PLUGD_KV_BIN, {{kEnvShutdownGraceMs, "600000"}}, {"--data", data});
  ASSERT_NE(r.channel, nullptr);
  auto kv = kv::v1::KV::NewStub(r.channel);
  auto ctx = Ctx();
  auto reader = kv->Scan(ctx.get(), kv::v1::ScanRequest());
  kv::v1::Entry entry;
  ASSERT_TRUE(reader->Read(&entry));
  int read = 1;
  ShutdownViaControl(r);
  while (reader->Read(&entry)) ++read;
  grpc::Status end = reader->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::UNAVAILABLE)
      << end.error_message();
  EXPECT_LT(read, kEntries);
  EXPECT_EQ(r.process->WaitExit(kHangGuard), 0) << r.process->Stderr();
}

}  // namespace
}  // namespace plugd
