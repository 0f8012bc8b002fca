// plugd-kv: a typed plugin serving kv.v1.KV, a small key-value store whose
// data survives restarts. The data file is, in order of precedence:
//   --data FILE (or --data=FILE), $KV_DATA_FILE, ./kv-data.pb
#include <cstdlib>
#include <cstring>
#include <string>

#include "kv_service.h"
#include "plugd/sdk/plugin.h"

namespace {

std::string DataPath(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--data") == 0 && i + 1 < argc) return argv[i + 1];
    if (std::strncmp(argv[i], "--data=", 7) == 0) return argv[i] + 7;
  }
  if (const char* env = std::getenv("KV_DATA_FILE"); env && *env) return env;
  return "kv-data.pb";
}

}  // namespace

int main(int argc, char** argv) {
  plugd::sdk::Plugin plugin({.name = "kv", .version = "1.0.0"});
  plugd::examples::KvService kv(DataPath(argc, argv),
                                [&plugin] { return plugin.shutting_down(); });
  plugin.AddService(&kv);
  // Loaded only when launched by a host: run by hand, the plugin explains
  // itself instead.
  plugin.OnStart([&kv] { return kv.Load(); });
  return plugin.Serve();
}
