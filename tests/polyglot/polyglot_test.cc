// Plugins in Python, Node.js and Go, launched and called through the C++ host
// library exactly like the C++ ones: functions, one set of KV test vectors
// for every KV implementation, Describe and health, graceful stops, and the
// host's errors for broken plugins.
//
// Python, Node and Go are required: when one is missing the tests fail
// saying what to install (tools/setup-deps.sh installs them; the build
// compiles the Go plugins).
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "kv/v1/kv.grpc.pb.h"
#include "plugd/common/value.h"
#include "plugd/host/host.h"
#include "test_util.h"

namespace plugd::host {
namespace {

using ::plugd::testing::Bin;
using ::plugd::testing::CommandResult;
using ::plugd::testing::RunCommand;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string Source(const std::string& path) {
  return std::string(PLUGD_SOURCE_DIR) + "/" + path;
}

// Empty when Python and Node (with the SDKs' packages) can run plugins;
// otherwise what is missing and how to get it.
std::string MissingRuntimes() {
  static const std::string missing = [] {
    std::string out;
    if (RunCommand({"/usr/bin/python3", "-c", "import grpc, google.protobuf"})
            .exit_code != 0) {
      out +=
          "/usr/bin/python3 with grpcio and protobuf (Debian packages "
          "python3-grpcio python3-protobuf); ";
    }
    if (access(
            (std::string(PLUGD_BIN_DIR) + "/../python/plugd/v1/plugin_pb2.py")
                .c_str(),
            R_OK) != 0) {
      out += "the generated Python stubs (build target plugd_python_stubs); ";
    }
    if (RunCommand({"/bin/sh", "-c", "command -v node"}).exit_code != 0) {
      out += "node on PATH (Debian package nodejs); ";
    }
    if (access(Source("plugin-sdk/node/node_modules/@grpc/grpc-js/package.json")
                   .c_str(),
               R_OK) != 0) {
      out += "plugin-sdk/node/node_modules (npm ci in plugin-sdk/node); ";
    }
    if (access(Bin("plugd-go-kv").c_str(), X_OK) != 0) {
      out += "the Go plugins (build/bin/plugd-go-*, built with golang-go); ";
    }
    if (!out.empty()) {
      out = "missing: " + out +
            "run `make setup` (tools/setup-deps.sh), then build";
    }
    return out;
  }();
  return missing;
}

#define REQUIRE_RUNTIMES() \
  ASSERT_EQ(MissingRuntimes(), "") << "Python/Node/Go plugins cannot run"

class PolyglotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_RUNTIMES();
    HostOptions host_options;
    host_options.mutex_deadlock_detection = true;  // checks our locks
    auto host = Host::Create(host_options);
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = std::move(*host);
  }

  absl::StatusOr<std::shared_ptr<Plugin>> Launch(
      const std::string& name, std::vector<std::string> command) {
    PluginOptions options;
    options.name = name;
    options.command = std::move(command);
    return host_->Launch(options);
  }

  std::shared_ptr<Plugin> MustLaunch(const std::string& name,
                                     std::vector<std::string> command) {
    auto plugin = Launch(name, std::move(command));
    EXPECT_TRUE(plugin.ok()) << plugin.status();
    return plugin.ok() ? *plugin : nullptr;
  }

  // A second Host, for launching again after a plugin of host_ was stopped.
  // Relaunching in the same Host after a stop can stall its event loop (the
  // launcher's thread blocks in waitpid() on the new, live plugin; seen with
  // C++ and Node plugins alike): a host-library bug, reported, not covered
  // here.
  std::unique_ptr<Host> FreshHost() {
    HostOptions host_options;
    host_options.mutex_deadlock_detection = true;  // checks our locks
    auto host = Host::Create(host_options);
    EXPECT_TRUE(host.ok()) << host.status();
    return host.ok() ? std::move(*host) : nullptr;
  }

  std::unique_ptr<Host> host_;
};

// --- functions -------------------------------------------------------------

TEST_F(PolyglotTest, PythonStatsFunctions) {
  auto stats = MustLaunch("stats", {Bin("plugd-py-stats")});
  ASSERT_NE(stats, nullptr);
  auto mean = stats->Call(
      "mean", {NumberValue(1), NumberValue(2), NumberValue(3), NumberValue(6)});
  ASSERT_TRUE(mean.ok()) << mean.status();
  EXPECT_EQ(mean->number_value(), 3);
  auto median = stats->Call("median", {NumberValue(5), StringValue("1"),
                                       NumberValue(3), NumberValue(2)});
  ASSERT_TRUE(median.ok()) << median.status();
  EXPECT_EQ(median->number_value(), 2.5);
  auto stdev =
      stats->Call("stdev", {NumberValue(2), NumberValue(4), NumberValue(4),
                            NumberValue(4), NumberValue(5), NumberValue(5),
                            NumberValue(7), NumberValue(9)});
  ASSERT_TRUE(stdev.ok()) << stdev.status();
  EXPECT_NEAR(stdev->number_value(), 2.138089935, 1e-6);

  auto bad = stats->Call("mean", {NumberValue(1), StringValue("two")});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "mean: argument 2 (x) must be a number, got string \"two\"");
  auto none = stats->Call("median", {});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(none.status().message(),
            "median: expected at least 1 argument (median X...), got 0");
  auto one = stats->Call("stdev", {NumberValue(1)});
  EXPECT_EQ(one.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(one.status().message()), HasSubstr("at least 2"));
  auto unknown = stats->Call("mode", {NumberValue(1)});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(unknown.status().message(),
            "no function \"mode\" in plugin stats; it offers: mean, median, "
            "stdev");

  auto list = stats->ListFunctions();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].name(), "mean");
  EXPECT_EQ((*list)[0].min_args(), 1u);
  EXPECT_EQ((*list)[0].max_args(), -1);
  EXPECT_EQ((*list)[0].params(0).kind(), v1::VALUE_KIND_NUMBER);
  EXPECT_TRUE((*list)[0].params(0).variadic());
}

TEST_F(PolyglotTest, NodeStringsFunctions) {
  auto strings = MustLaunch("strings", {Bin("plugd-node-strings")});
  ASSERT_NE(strings, nullptr);
  auto upper = strings->Call("upper", {StringValue("plugd ünïcode")});
  ASSERT_TRUE(upper.ok()) << upper.status();
  EXPECT_EQ(upper->string_value(), "PLUGD ÜNÏCODE");
  auto reverse = strings->Call("reverse", {StringValue("abc")});
  ASSERT_TRUE(reverse.ok()) << reverse.status();
  EXPECT_EQ(reverse->string_value(), "cba");
  auto words = strings->Call(
      "wordcount", {StringValue("one two  three"), StringValue(" four ")});
  ASSERT_TRUE(words.ok()) << words.status();
  EXPECT_EQ(words->number_value(), 4);

  auto bad = strings->Call("upper", {NumberValue(3)});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "upper: argument 1 (s) must be a string, got number 3");
  auto arity = strings->Call("reverse", {StringValue("a"), StringValue("b")});
  EXPECT_EQ(arity.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(arity.status().message(),
            "reverse: expected 1 argument (reverse S), got 2");
  auto unknown = strings->Call("lower", {StringValue("A")});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(unknown.status().message(),
            "no function \"lower\" in plugin strings; it offers: reverse, "
            "upper, wordcount");
}

TEST_F(PolyglotTest, GoHashFunctions) {
  auto hash = MustLaunch("hash", {Bin("plugd-go-hash")});
  ASSERT_NE(hash, nullptr);
  auto sha = hash->Call("sha256", {StringValue("abc")});
  ASSERT_TRUE(sha.ok()) << sha.status();
  EXPECT_EQ(sha->string_value(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto joined = hash->Call("sha256", {StringValue("a"), StringValue("bc")});
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->string_value(), sha->string_value());
  auto b64 = hash->Call("base64", {StringValue("hello, world")});
  ASSERT_TRUE(b64.ok()) << b64.status();
  EXPECT_EQ(b64->string_value(), "aGVsbG8sIHdvcmxk");
  auto std = hash->Call("base64", {StringValue("~~~")});
  ASSERT_TRUE(std.ok()) << std.status();
  EXPECT_EQ(std->string_value(), "fn5+");
  auto url = hash->Call("base64", {StringValue("~~~"), StringValue("true")});
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->string_value(), "fn5-");
  auto hex = hash->Call("hex", {StringValue("hi")});
  ASSERT_TRUE(hex.ok()) << hex.status();
  EXPECT_EQ(hex->string_value(), "6869");

  auto bad = hash->Call("hex", {NumberValue(3)});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "hex: argument 1 (s) must be a string, got number 3");
  auto flag = hash->Call("base64", {StringValue("x"), StringValue("maybe")});
  EXPECT_EQ(flag.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(flag.status().message(),
            "base64: argument 2 (url) must be true or false, got string "
            "\"maybe\"");
  auto arity = hash->Call("hex", {StringValue("a"), StringValue("b")});
  EXPECT_EQ(arity.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(arity.status().message(),
            "hex: expected 1 argument (hex S), got 2");
  auto none = hash->Call("sha256", {});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(none.status().message(),
            "sha256: expected at least 1 argument (sha256 S...), got 0");
  auto unknown = hash->Call("md5", {StringValue("a")});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(unknown.status().message(),
            "no function \"md5\" in plugin hash; it offers: base64, hex, "
            "sha256");

  auto list = hash->ListFunctions();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].name(), "base64");
  EXPECT_EQ((*list)[0].min_args(), 1u);
  EXPECT_EQ((*list)[0].max_args(), 2);
  EXPECT_EQ((*list)[0].params(1).kind(), v1::VALUE_KIND_BOOL);
  EXPECT_TRUE((*list)[0].params(1).optional());
}

TEST_F(PolyglotTest, PluginWithoutAnySdk) {
  auto echo = MustLaunch("echo", {Bin("plugd-py-nosdk-echo")});
  ASSERT_NE(echo, nullptr);
  auto result = echo->Call("echo", {NumberValue(1), StringValue("a")});
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->list_value().values_size(), 2);
  EXPECT_EQ(result->list_value().values(1).string_value(), "a");
  auto unknown = echo->Call("shout", {});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("echo"));
  auto info = echo->Describe();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->name(), "nosdk-echo");
  EXPECT_EQ(info->pid(), echo->pid());
  auto stopped = echo->Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_TRUE(stopped->success()) << stopped->ToString();
}

// --- Describe, health, stop ------------------------------------------------

struct Example {
  std::string name;                   // test name
  std::string binary;                 // in build/bin
  std::string plugin;                 // its Describe name
  std::vector<std::string> services;  // besides health and control
};

void PrintTo(const Example& e, std::ostream* os) { *os << e.binary; }

std::vector<Example> Examples() {
  return {
      {"PythonStats", "plugd-py-stats", "stats", {"plugd.v1.Functions"}},
      {"PythonKv", "plugd-py-kv", "kv", {"kv.v1.KV"}},
      {"PythonNoSdk",
       "plugd-py-nosdk-echo",
       "nosdk-echo",
       {"plugd.v1.Functions"}},
      {"NodeStrings", "plugd-node-strings", "strings", {"plugd.v1.Functions"}},
      {"NodeKv", "plugd-node-kv", "kv", {"kv.v1.KV"}},
      {"GoHash", "plugd-go-hash", "hash", {"plugd.v1.Functions"}},
      {"GoKv", "plugd-go-kv", "kv", {"kv.v1.KV"}},
  };
}

class ExampleTest : public PolyglotTest,
                    public ::testing::WithParamInterface<Example> {
 protected:
  std::shared_ptr<Plugin> LaunchExample() {
    std::vector<std::string> command = {Bin(GetParam().binary)};
    if (GetParam().services.back() == "kv.v1.KV") {
      command.push_back("--data=" + host_->socket_dir() + "/kv.pb");
    }
    return MustLaunch(GetParam().name, command);
  }
};

grpc::health::v1::HealthCheckResponse::ServingStatus Check(
    Plugin& plugin, const std::string& service, grpc::StatusCode* code) {
  auto health = grpc::health::v1::Health::NewStub(plugin.channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  *code = health->Check(&context, request, &response).error_code();
  return response.status();
}

TEST_P(ExampleTest, DescribeAndHealth) {
  auto plugin = LaunchExample();
  ASSERT_NE(plugin, nullptr);
  auto info = plugin->Describe();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->name(), GetParam().plugin);
  EXPECT_EQ(info->version(), "1.0.0");
  EXPECT_EQ(info->protocol_version(), 1u);
  EXPECT_EQ(info->core_protocol_version(), 1u);
  EXPECT_EQ(info->pid(), plugin->pid());
  std::vector<std::string> services = {"grpc.health.v1.Health",
                                       "plugd.v1.Control"};
  services.insert(services.end(), GetParam().services.begin(),
                  GetParam().services.end());
  EXPECT_THAT(info->services(), ::testing::IsSupersetOf(services));
  EXPECT_EQ(info->functions_size() > 0,
            GetParam().services.back() == "plugd.v1.Functions");

  for (const std::string& name : {std::string(""), std::string("plugin")}) {
    grpc::StatusCode code;
    EXPECT_EQ(Check(*plugin, name, &code),
              grpc::health::v1::HealthCheckResponse::SERVING)
        << "health of \"" << name << "\"";
    EXPECT_EQ(code, grpc::StatusCode::OK);
  }
  if (GetParam().plugin != "nosdk-echo") {
    grpc::StatusCode code;
    Check(*plugin, "no.such.Service", &code);
    EXPECT_EQ(code, grpc::StatusCode::NOT_FOUND);
  }
}

TEST_P(ExampleTest, StopWithAnOpenWatchExits0) {
  auto plugin = LaunchExample();
  ASSERT_NE(plugin, nullptr);
  pid_t pid = plugin->pid();
  // An open health Watch must not hold the shutdown.
  auto health = grpc::health::v1::Health::NewStub(plugin->channel());
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  auto watch = health->Watch(&context, request);
  grpc::health::v1::HealthCheckResponse update;
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  absl::Time start = absl::Now();
  auto stopped = plugin->Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_TRUE(stopped->success()) << stopped->ToString();
  // Within the grace period: the shutdown call did it, not SIGTERM (a hang
  // guard rather than a timing claim: SIGTERM comes after 5 s).
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_FALSE(plugd::testing::PidAlive(pid));
  while (watch->Read(&update)) {
  }
  watch->Finish();
}

TEST_P(ExampleTest, SigtermExits0) {
  auto plugin = LaunchExample();
  ASSERT_NE(plugin, nullptr);
  ASSERT_EQ(kill(plugin->pid(), SIGTERM), 0);
  auto exit = plugin->WaitForExit(absl::Seconds(10));
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->success()) << exit->ToString();
}

TEST_P(ExampleTest, NoCommonVersionIsAClearError) {
  PluginOptions options;
  options.name = GetParam().name;
  options.command = {Bin(GetParam().binary)};
  options.protocol_versions = {7, 8};
  absl::Status status = host_->Launch(options).status();
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("before its handshake"),
                    HasSubstr("no protocol version in common")));
}

TEST_P(ExampleTest, RunByHandExplainsAndExits1) {
  CommandResult r = RunCommand({Bin(GetParam().binary)});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, AllOf(HasSubstr("plugd plugin"),
                           HasSubstr("not meant to be run by hand")));
  EXPECT_EQ(r.out, "");
}

INSTANTIATE_TEST_SUITE_P(Examples, ExampleTest, ::testing::ValuesIn(Examples()),
                         [](const ::testing::TestParamInfo<Example>& info) {
                           return info.param.name;
                         });

// --- one set of KV test vectors for every implementation -------------------

struct KvImpl {
  std::string name;
  std::string binary;
};

void PrintTo(const KvImpl& k, std::ostream* os) { *os << k.binary; }

class KvVectors : public PolyglotTest,
                  public ::testing::WithParamInterface<KvImpl> {
 protected:
  std::shared_ptr<Plugin> LaunchKv(const std::string& binary,
                                   const std::string& data) {
    return MustLaunch("kv-" + GetParam().name, {Bin(binary), "--data", data});
  }
};

grpc::Status Put(kv::v1::KV::Stub& kv, const std::string& key,
                 const std::string& value) {
  grpc::ClientContext context;
  kv::v1::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  kv::v1::PutResponse response;
  return kv.Put(&context, request, &response);
}

grpc::Status Get(kv::v1::KV::Stub& kv, const std::string& key,
                 std::string* value) {
  grpc::ClientContext context;
  kv::v1::GetRequest request;
  request.set_key(key);
  kv::v1::GetResponse response;
  grpc::Status status = kv.Get(&context, request, &response);
  *value = response.value();
  return status;
}

std::vector<std::string> List(kv::v1::KV::Stub& kv, const std::string& prefix) {
  grpc::ClientContext context;
  kv::v1::ListRequest request;
  request.set_prefix(prefix);
  kv::v1::ListResponse response;
  grpc::Status status = kv.List(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return {response.keys().begin(), response.keys().end()};
}

std::vector<std::string> Scan(kv::v1::KV::Stub& kv, const std::string& prefix) {
  grpc::ClientContext context;
  kv::v1::ScanRequest request;
  request.set_prefix(prefix);
  auto reader = kv.Scan(&context, request);
  std::vector<std::string> out;
  kv::v1::Entry entry;
  while (reader->Read(&entry)) out.push_back(entry.key() + "=" + entry.value());
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  return out;
}

const std::string kBinary("b\0i\xffn", 5);  // a NUL and a non-UTF-8 byte

TEST_P(KvVectors, PutGetListScanDeleteAndRestart) {
  const std::string data = host_->socket_dir() + "/kv.pb";
  auto plugin = LaunchKv(GetParam().binary, data);
  ASSERT_NE(plugin, nullptr);
  auto kv = kv::v1::KV::NewStub(plugin->channel());

  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{
           {"fruit/kiwi", "green"},
           {"fruit/apple", "red"},
           {"veg/leek", "white"},
           {"bin", kBinary},
           {"fruit/apple", "RED"}}) {  // replaces
    grpc::Status status = Put(*kv, key, value);
    ASSERT_TRUE(status.ok()) << key << ": " << status.error_message();
  }
  std::string value;
  ASSERT_TRUE(Get(*kv, "fruit/apple", &value).ok());
  EXPECT_EQ(value, "RED");
  ASSERT_TRUE(Get(*kv, "bin", &value).ok());
  EXPECT_EQ(value, kBinary);
  EXPECT_EQ(Get(*kv, "nope", &value).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Get(*kv, "", &value).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Put(*kv, "", "x").error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_THAT(List(*kv, ""), ::testing::ElementsAre("bin", "fruit/apple",
                                                    "fruit/kiwi", "veg/leek"));
  EXPECT_THAT(List(*kv, "fruit/"),
              ::testing::ElementsAre("fruit/apple", "fruit/kiwi"));
  EXPECT_THAT(List(*kv, "zzz"), ::testing::IsEmpty());
  EXPECT_THAT(Scan(*kv, "fruit/"),
              ::testing::ElementsAre("fruit/apple=RED", "fruit/kiwi=green"));

  {
    grpc::ClientContext context;
    kv::v1::DeleteRequest request;
    request.set_key("fruit/kiwi");
    kv::v1::DeleteResponse response;
    ASSERT_TRUE(kv->Delete(&context, request, &response).ok());
    EXPECT_TRUE(response.existed());
  }
  {
    grpc::ClientContext context;
    kv::v1::DeleteRequest request;
    request.set_key("fruit/kiwi");
    kv::v1::DeleteResponse response;
    ASSERT_TRUE(kv->Delete(&context, request, &response).ok());
    EXPECT_FALSE(response.existed());
  }
  EXPECT_EQ(Get(*kv, "fruit/kiwi", &value).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // The data survives a restart.
  auto stopped = plugin->Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_TRUE(stopped->success()) << stopped->ToString();
  PluginOptions again;
  again.name = "kv-" + GetParam().name + "-again";
  again.command = {Bin(GetParam().binary)};
  again.env = {{"KV_DATA_FILE", data}};  // the other way to name the file
  auto host2 = FreshHost();
  ASSERT_NE(host2, nullptr);
  auto restarted = host2->Launch(again);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  auto kv2 = kv::v1::KV::NewStub((*restarted)->channel());
  EXPECT_THAT(Scan(*kv2, ""),
              ::testing::ElementsAre("bin=" + kBinary, "fruit/apple=RED",
                                     "veg/leek=white"));
}

TEST_P(KvVectors, ReadsTheDataFilesOfTheOtherImplementations) {
  // All KV plugins share plugd-kv's file format: each reads what the C++
  // plugin wrote, and the C++ plugin reads what each wrote.
  const std::string data = host_->socket_dir() + "/shared.pb";
  auto writer = LaunchKv("plugd-kv", data);
  ASSERT_NE(writer, nullptr);
  auto kv = kv::v1::KV::NewStub(writer->channel());
  ASSERT_TRUE(Put(*kv, "from", "c++").ok());
  ASSERT_TRUE(writer->Stop().ok());

  PluginOptions options;
  options.name = "kv-" + GetParam().name + "-reader";
  options.command = {Bin(GetParam().binary), "--data", data};
  auto host2 = FreshHost();
  ASSERT_NE(host2, nullptr);
  auto reader = host2->Launch(options);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto kv2 = kv::v1::KV::NewStub((*reader)->channel());
  std::string value;
  ASSERT_TRUE(Get(*kv2, "from", &value).ok());
  EXPECT_EQ(value, "c++");
  ASSERT_TRUE(Put(*kv2, "to", kBinary).ok());
  ASSERT_TRUE((*reader)->Stop().ok());

  options.name = "kv-cpp-check";
  options.command = {Bin("plugd-kv"), "--data", data};
  auto host3 = FreshHost();
  ASSERT_NE(host3, nullptr);
  auto cpp = host3->Launch(options);
  ASSERT_TRUE(cpp.ok()) << cpp.status();
  auto kv3 = kv::v1::KV::NewStub((*cpp)->channel());
  EXPECT_THAT(Scan(*kv3, ""),
              ::testing::ElementsAre("from=c++", "to=" + kBinary));
}

TEST_P(KvVectors, ACorruptDataFileStopsTheStartNamingIt) {
  const std::string data = host_->socket_dir() + "/corrupt.pb";
  ASSERT_EQ(RunCommand({"/bin/sh", "-c", "echo garbage > " + data}).exit_code,
            0);
  absl::Status status =
      Launch("kv-" + GetParam().name, {Bin(GetParam().binary), "--data", data})
          .status();
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("exited with code 1 before its handshake"),
                    HasSubstr(data), HasSubstr("corrupt")));
}

INSTANTIATE_TEST_SUITE_P(AllLanguages, KvVectors,
                         ::testing::Values(KvImpl{"cpp", "plugd-kv"},
                                           KvImpl{"python", "plugd-py-kv"},
                                           KvImpl{"node", "plugd-node-kv"},
                                           KvImpl{"go", "plugd-go-kv"}),
                         [](const ::testing::TestParamInfo<KvImpl>& info) {
                           return info.param.name;
                         });

// --- broken plugins: the same host errors as for C++ -----------------------

struct Broken {
  std::string name;
  std::string binary;
  std::string detail;  // the garbage line, or the language in stderr
};

void PrintTo(const Broken& b, std::ostream* os) { *os << b.binary; }

class BrokenTest : public PolyglotTest,
                   public ::testing::WithParamInterface<Broken> {};

TEST_P(BrokenTest, GarbageHandshakeIsQuoted) {
  const Broken& b = GetParam();
  absl::Status status = Launch(b.name, {Bin(b.binary)}).status();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("plugin " + b.name),
                    HasSubstr("printed \"" + b.detail +
                              "\" instead of a handshake line")));
}

INSTANTIATE_TEST_SUITE_P(
    Languages, BrokenTest,
    ::testing::Values(
        Broken{"py", "plugd-py-broken-handshake", "hello from a python plugin"},
        Broken{"node", "plugd-node-broken-handshake",
               "hello from a node plugin"},
        Broken{"go", "plugd-go-broken-handshake", "hello from a go plugin"}),
    [](const ::testing::TestParamInfo<Broken>& info) {
      return info.param.name;
    });

TEST_F(PolyglotTest, CrashAtStartGivesCodeAndStderr) {
  for (const auto& [name, binary, who] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"py-crash", "plugd-py-crash-at-start", "python"},
           {"node-crash", "plugd-node-crash-at-start", "node"},
           {"go-crash", "plugd-go-crash-at-start", "go"}}) {
    absl::Status status = Launch(name, {Bin(binary)}).status();
    EXPECT_FALSE(status.ok()) << name;
    EXPECT_THAT(
        std::string(status.message()),
        AllOf(HasSubstr("plugin " + name +
                        " exited with code 3 before its handshake"),
              HasSubstr("\"[ERROR] cannot open /nonexistent/config.yaml\""),
              HasSubstr("\"[ERROR] " + who + " plugin giving up\"")))
        << name;
  }
}

// --- calc with C++, Python, Node and Go plugins at once --------------------

CommandResult Calc(std::vector<std::string> args) {
  std::vector<std::string> argv = {
      Bin("calc"),
      "--plugin",
      Bin("plugd-random"),
      "--plugin",
      Bin("plugd-py-stats"),
      "--plugin",
      Source("plugin-sdk/node/examples/strings.js"),
      "--plugin",
      Bin("plugd-go-hash")};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

TEST(PolyglotCalc, CallsCppPythonNodeAndGoFunctions) {
  REQUIRE_RUNTIMES();
  CommandResult list = Calc({"--list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, AllOf(HasSubstr("random  (plugin random)"),
                              HasSubstr("mean  (plugin py-stats)"),
                              HasSubstr("upper  (plugin strings.js)"),
                              HasSubstr("sha256  (plugin go-hash)")));
  CommandResult r = Calc({"random", "7", "7"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "7\n");
  r = Calc({"mean", "1", "2", "6"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "3\n");
  r = Calc({"upper", "plugd"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("PLUGD"));
  r = Calc({"hex", "plugd"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "706c756764\n");
  r = Calc({"hex", "3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("hex: argument 1 (s) must be a string"));
  r = Calc({"median", "1", "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("median: argument 2 (x) must be a number"));
  r = Calc({"frobnicate"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, AllOf(HasSubstr("random"), HasSubstr("mean"),
                           HasSubstr("wordcount"), HasSubstr("sha256")));
}

}  // namespace
}  // namespace plugd::host

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  plugd::testing::InstallNoLeftoverProcessesCheck();
  return RUN_ALL_TESTS();
}
