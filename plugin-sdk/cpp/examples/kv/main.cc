// plugd-kv: a typed plugin serving kv.v1.KV, a small key-value store whose
// data survives restarts. The data file is, in order of precedence:
//   --data FILE (or --data=FILE), $KV_DATA_FILE, ./kv-data.pb
//
// It is also loadable by a HashiCorp go-plugin host (docs/go-plugin.md): it
// accepts the KV example application's go-plugin cookie
// KV_PLUGIN=plugd-kv-example-1 (plugd::examples::kKvGoPluginCookieKey/Value),
// or another application's with --go-plugin-cookie KEY=VALUE.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "kv_service.h"
#include "plugd/sdk/plugin.h"

namespace {

// The value of flag `name` ("--name VALUE" or "--name=VALUE"), or null.
const char* Flag(int argc, char** argv, const char* name) {
  const size_t length = std::strlen(name);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0 && i + 1 < argc) return argv[i + 1];
    if (std::strncmp(argv[i], name, length) == 0 && argv[i][length] == '=') {
      return argv[i] + length + 1;
    }
  }
  return nullptr;
}

std::string DataPath(int argc, char** argv) {
  if (const char* flag = Flag(argc, argv, "--data")) return flag;
  if (const char* env = std::getenv("KV_DATA_FILE"); env && *env) return env;
  return "kv-data.pb";
}

}  // namespace

int main(int argc, char** argv) {
  plugd::sdk::GoPluginHandshake go_plugin{
      plugd::examples::kKvGoPluginCookieKey,
      plugd::examples::kKvGoPluginCookieValue};
  if (const char* cookie = Flag(argc, argv, "--go-plugin-cookie")) {
    const char* eq = std::strchr(cookie, '=');
    if (eq == nullptr || eq == cookie || eq[1] == '\0') {
      std::cerr
          << "plugd-kv: --go-plugin-cookie wants KEY=VALUE (the go-plugin "
             "host's MagicCookieKey and MagicCookieValue), got \""
          << cookie << "\"\n";
      return plugd::sdk::kExitError;
    }
    go_plugin = {std::string(cookie, eq), std::string(eq + 1)};
  }
  plugd::sdk::Plugin plugin(
      {.name = "kv", .version = "1.0.0", .go_plugin = go_plugin});
  plugd::examples::KvService kv(DataPath(argc, argv),
                                [&plugin] { return plugin.shutting_down(); });
  plugin.AddService(&kv);
  // Loaded only when launched by a host: run by hand, the plugin explains
  // itself instead.
  plugin.OnStart([&kv] { return kv.Load(); });
  return plugin.Serve();
}
