// kvctl: a host that launches the KV plugin and calls it through the typed
// kv.v1.KV stubs generated from proto/examples/kv/v1/kv.proto.
//
//   kvctl put greeting hello
//   kvctl get greeting            # prints hello
//   kvctl scan                    # key<TAB>value lines
//   kvctl --plugin build/bin/plugd-kv --data /tmp/kv.pb list
//   # a KV plugin built with HashiCorp go-plugin (docs/go-plugin.md):
//   kvctl --plugin build/bin/goplugin-kv
//         --go-plugin KV_PLUGIN=plugd-kv-example-1 put greeting hello
//   (one command line)
//   # a KV plugin supervised by a plugd daemon:
//   kvctl --broker unix:/tmp/plugd-demo/admin.sock --attach go-kv list
//
// Exit codes: 0 success, 1 the call or the plugin failed (NOT_FOUND for get
// of an absent key), 2 usage error.
#include <limits.h>
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kv/v1/kv.grpc.pb.h"
#include "plugd/common/log.h"
#include "plugd/host/host.h"

namespace {

constexpr char kUsage[] =
    "usage: kvctl [--plugin PATH] [--data FILE] COMMAND [ARG...]\n"
    "\n"
    "commands:\n"
    "  get KEY           print the value of KEY\n"
    "  put KEY VALUE     set KEY to VALUE\n"
    "  delete KEY        remove KEY\n"
    "  list [PREFIX]     print the keys (with PREFIX), sorted\n"
    "  scan [PREFIX]     print KEY<TAB>VALUE for each entry (streaming call)\n"
    "\n"
    "options:\n"
    "  --plugin PATH     the KV plugin (default: plugd-kv next to kvctl)\n"
    "  --data FILE       the plugin's data file (default: kv-data.pb in the\n"
    "                    current directory)\n"
    "  --go-plugin KEY=VALUE\n"
    "                    the plugin is a HashiCorp go-plugin plugin whose\n"
    "                    HandshakeConfig has this magic cookie\n"
    "  --broker ADDR --attach NAME\n"
    "                    call plugin NAME supervised by the plugd daemon at\n"
    "                    ADDR (unix:/path) instead of launching one\n"
    "  --help, -h        this text\n"
    "\n"
    "exit codes: 0 ok, 1 call or plugin failed, 2 usage error\n";

int Usage(const std::string& error) {
  std::cerr << "kvctl: " << error << "\n\n" << kUsage;
  return 2;
}

std::string SelfDir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, n);
  return path.substr(0, path.find_last_of('/'));
}

int Fail(const grpc::Status& status, absl::string_view what) {
  std::cerr << "kvctl: " << what << ": " << status.error_message() << "\n";
  return 1;
}

grpc::ClientContext* WithDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(30));
  return context;
}

int RunCommand(kv::v1::KV::Stub& stub, const std::vector<std::string>& cmd) {
  const std::string& verb = cmd[0];
  auto want = [&](size_t lo, size_t hi) {
    return cmd.size() - 1 >= lo && cmd.size() - 1 <= hi;
  };
  grpc::ClientContext context;
  if (verb == "get" && want(1, 1)) {
    kv::v1::GetRequest request;
    request.set_key(cmd[1]);
    kv::v1::GetResponse response;
    grpc::Status status = stub.Get(WithDeadline(&context), request, &response);
    if (!status.ok()) return Fail(status, "get " + cmd[1]);
    std::cout << response.value() << "\n";
  } else if (verb == "put" && want(2, 2)) {
    kv::v1::PutRequest request;
    request.set_key(cmd[1]);
    request.set_value(cmd[2]);
    kv::v1::PutResponse response;
    grpc::Status status = stub.Put(WithDeadline(&context), request, &response);
    if (!status.ok()) return Fail(status, "put " + cmd[1]);
  } else if (verb == "delete" && want(1, 1)) {
    kv::v1::DeleteRequest request;
    request.set_key(cmd[1]);
    kv::v1::DeleteResponse response;
    grpc::Status status =
        stub.Delete(WithDeadline(&context), request, &response);
    if (!status.ok()) return Fail(status, "delete " + cmd[1]);
    if (!response.existed())
      std::cerr << "kvctl: " << cmd[1] << " was absent\n";
  } else if (verb == "list" && want(0, 1)) {
    kv::v1::ListRequest request;
    if (cmd.size() > 1) request.set_prefix(cmd[1]);
    kv::v1::ListResponse response;
    grpc::Status status = stub.List(WithDeadline(&context), request, &response);
    if (!status.ok()) return Fail(status, "list");
    for (const std::string& key : response.keys()) std::cout << key << "\n";
  } else if (verb == "scan" && want(0, 1)) {
    kv::v1::ScanRequest request;
    if (cmd.size() > 1) request.set_prefix(cmd[1]);
    auto reader = stub.Scan(WithDeadline(&context), request);
    kv::v1::Entry entry;
    while (reader->Read(&entry)) {
      std::cout << entry.key() << "\t" << entry.value() << "\n";
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) return Fail(status, "scan");
  } else {
    return Usage(absl::StrCat("bad command or argument count: ", verb));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string plugin_path = SelfDir() + "/plugd-kv";
  std::string data;
  std::string go_plugin;
  std::string broker;
  std::string attach;
  std::vector<std::string> command;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--plugin" && i + 1 < argc) {
      plugin_path = argv[++i];
    } else if (arg == "--data" && i + 1 < argc) {
      data = argv[++i];
    } else if (arg == "--go-plugin" && i + 1 < argc) {
      go_plugin = argv[++i];
    } else if (arg == "--broker" && i + 1 < argc) {
      broker = argv[++i];
    } else if (arg == "--attach" && i + 1 < argc) {
      attach = argv[++i];
    } else if (absl::StartsWith(arg, "--") && command.empty()) {
      return Usage(absl::StrCat("unknown option or missing value: ", arg));
    } else {
      command.push_back(arg);
    }
  }
  if (command.empty()) return Usage("give a COMMAND");
  if (broker.empty() != attach.empty()) {
    return Usage("--broker and --attach go together");
  }
  size_t eq = go_plugin.find('=');
  if (!go_plugin.empty() &&
      (eq == std::string::npos || eq == 0 || eq + 1 == go_plugin.size())) {
    return Usage("--go-plugin wants KEY=VALUE, the plugin's magic cookie");
  }
  if (getenv("PLUGD_LOG_LEVEL") == nullptr) {
    plugd::log::SetMinLevel(plugd::log::Level::kWarning);
  }

  auto host = plugd::host::Host::Create();
  if (!host.ok()) {
    std::cerr << "kvctl: " << host.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<std::shared_ptr<plugd::host::Plugin>> plugin;
  if (!attach.empty()) {
    plugin = (*host)->Attach(broker, attach);
  } else {
    plugd::host::PluginOptions options;
    options.command = {plugin_path};
    if (!data.empty())
      options.command.insert(options.command.end(), {"--data", data});
    if (!go_plugin.empty()) {
      options.go_plugin = plugd::broker::GoPluginOptions{
          go_plugin.substr(0, eq), go_plugin.substr(eq + 1)};
    }
    plugin = (*host)->Launch(options);
  }
  if (!plugin.ok()) {
    std::cerr << "kvctl: " << plugin.status().message() << "\n";
    return 1;
  }
  auto stub = kv::v1::KV::NewStub((*plugin)->channel());
  return RunCommand(*stub, command);
}
