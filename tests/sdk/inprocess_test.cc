// Plugin::Serve() run in the test process, to drive the parts of the API
// the example plugins do not expose: SetServing, Shutdown() and the
// OnStart / OnShutdown hooks.
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "plugd/common/protocol.h"
#include "plugd/common/value.h"
#include "plugd/sdk/plugin.h"

namespace plugd::sdk {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

constexpr absl::Duration kHangGuard = absl::Seconds(20);

TEST(InProcessPluginTest, SetServingHooksAndShutdown) {
  char tmpl[] = "/tmp/sdki-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string socket = dir + "/p.sock";
  setenv(kEnvMagicCookieKey, kMagicCookieValue, 1);
  setenv(kEnvSocket, socket.c_str(), 1);
  setenv(kEnvProtocolVersions, "1,2", 1);

  Plugin plugin(
      {.name = "inproc", .version = "0.1", .protocol_versions = {1, 2}});
  std::atomic<int> started{0}, stopped{0};
  plugin.OnStart([&] {
    ++started;
    return absl::OkStatus();
  });
  plugin.OnShutdown([&] {
    EXPECT_TRUE(plugin.shutting_down());
    ++stopped;
  });
  plugin.AddFunction(
      {.name = "one",
       .help = "one: 1",
       .params = {},
       .impl = [](const Args&) -> absl::StatusOr<google::protobuf::Value> {
         return plugd::NumberValue(1);
       }});
  std::atomic<int> exit_code{-1};
  std::thread serving([&] { exit_code = plugin.Serve(); });
  // On a failed assertion: stop and join the server all the same.
  absl::Cleanup stop = [&] {
    plugin.Shutdown();
    if (serving.joinable()) serving.join();
  };

  // Retry the connection quickly until the plugin listens.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  auto channel = grpc::CreateCustomChannel(
      "unix:" + socket, grpc::InsecureChannelCredentials(), args);
  ASSERT_TRUE(
      channel->WaitForConnected(absl::ToChronoTime(absl::Now() + kHangGuard)));
  EXPECT_EQ(plugin.protocol_version(), 2u);
  EXPECT_EQ(started.load(), 1);

  auto health = Health::NewStub(channel);
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(absl::ToChronoTime(absl::Now() + kHangGuard));
  auto watch = health->Watch(&watch_ctx, HealthCheckRequest());
  HealthCheckResponse response;
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);

  plugin.SetServing(false);
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
  {
    grpc::ClientContext ctx;
    HealthCheckRequest request;
    request.set_service("plugin");
    ASSERT_TRUE(health->Check(&ctx, request, &response).ok());
    EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
  }
  plugin.SetServing(true);
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);

  plugin.Shutdown();
  plugin.Shutdown();  // harmless
  // The stream ends. Its last NOT_SERVING update usually arrives first, but
  // the SDK closes the connections as soon as no call is left, which can
  // drop that last frame (and turn UNAVAILABLE into CANCELLED); whatever
  // does arrive must not claim SERVING.
  while (watch->Read(&response)) {
    EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
  }
  EXPECT_FALSE(watch->Finish().ok());
  serving.join();
  EXPECT_EQ(exit_code.load(), 0);
  EXPECT_EQ(stopped.load(), 1);
  struct stat st;
  EXPECT_NE(lstat(socket.c_str(), &st), 0) << "socket file left behind";

  unsetenv(kEnvMagicCookieKey);
  unsetenv(kEnvSocket);
  unsetenv(kEnvProtocolVersions);
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

}  // namespace
}  // namespace plugd::sdk
