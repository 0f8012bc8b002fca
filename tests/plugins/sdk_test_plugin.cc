// plugd-test-sdk: a plugin built on the C++ SDK for the daemon's end-to-end
// tests. Functions:
//   echo X             returns X
//   set_serving BOOL   plugin.SetServing(BOOL): health SERVING / NOT_SERVING
//   spawn_grandchild   forks a child that stays in the process group,
//                      ignores SIGTERM and sleeps forever; returns its pid
//   pid                returns getpid()
//   not_utf8           returns a list holding a string that is not UTF-8
//   lock_order_inversion  locks two mutexes in one order, then the other
//                      (no deadlock, one thread); Abseil's deadlock detector,
//                      when on, aborts the plugin on it; returns "ok"
//   allocate MIB       allocates and touches MIB MiB in 1 MiB blocks; when an
//                      allocation fails (RLIMIT_AS), prints "allocate: out of
//                      memory after N MiB" and aborts, like a plugin whose
//                      allocator gives up; returns MIB if it all fit
//   burn_cpu           spins until killed (RLIMIT_CPU); never returns
//   garbage N          writes N chunks of binary garbage (invalid UTF-8,
//                      NULs, control bytes, a 64 KiB line) to stdout
//   flood_stderr BYTES writes about BYTES of stderr lines as fast as the pipe
//                      takes them, then returns how many it wrote
//   exit CODE MS       answers, then exits with CODE after MS milliseconds
//   hang               stops the whole process (SIGSTOP): no call or health
//                      check is answered until it is killed
// Flags:
//   --crash-if-exists PATH  exit 3 before serving if PATH exists
//   --slow-start-file PATH  if PATH exists: read a number of milliseconds
//                           from it, delete it, and wait that long before
//                           serving (a slow handshake, once)
//   --flood                 after start, a thread writes stderr lines as fast
//                           as it can
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "lock_order.h"
#include "plugd/common/status.h"
#include "plugd/common/value.h"
#include "plugd/sdk/plugin.h"

namespace {

std::atomic<bool> g_flooding{true};

void Flood() {
  // ~1000-byte lines with a counter, written with write(2) as fast as the
  // pipe takes them.
  std::string pad(980, 'x');
  for (uint64_t i = 0; g_flooding.load(std::memory_order_relaxed); ++i) {
    std::string line = absl::StrCat("flood ", i, " ", pad, "\n");
    size_t done = 0;
    while (done < line.size()) {
      ssize_t n = ::write(2, line.data() + done, line.size() - done);
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }
}

bool WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  bool flood = false;
  bool deadlock_detection = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--crash-if-exists" && i + 1 < argc) {
      struct stat st;
      if (stat(argv[++i], &st) == 0) {
        fprintf(stderr, "crash: %s exists\n", argv[i]);
        return 3;
      }
    } else if (arg == "--slow-start-file" && i + 1 < argc) {
      const char* path = argv[++i];
      FILE* f = fopen(path, "r");
      if (f != nullptr) {
        long ms = 0;  // NOLINT(runtime/int): fscanf's %ld
        if (fscanf(f, "%ld", &ms) != 1) ms = 0;
        fclose(f);
        unlink(path);
        fprintf(stderr, "slow start: waiting %ld ms before serving\n", ms);
        absl::SleepFor(absl::Milliseconds(ms));
      }
    } else if (arg == "--flood") {
      flood = true;
    } else if (arg == "--mutex-deadlock-detection") {
      deadlock_detection = true;
    } else {
      fprintf(stderr, "plugd-test-sdk: unknown argument %s\n", arg.c_str());
      return 2;
    }
  }

  using plugd::sdk::Kind;
  using plugd::sdk::Param;
  plugd::sdk::Plugin plugin({.name = "sdk-test",
                             .version = "0.0.1-test",
                             .mutex_deadlock_detection = deadlock_detection});
  plugin.AddFunction(
      {.name = "lock_order_inversion",
       .help = "lock_order_inversion: locks two mutexes both ways round",
       .params = {},
       .impl = [](const plugd::sdk::Args&)
           -> absl::StatusOr<google::protobuf::Value> {
         plugd::testing::InvertLockOrder();
         return plugd::StringValue("ok");
       }});
  plugin.AddFunction(
      {.name = "hang",
       .help = "hang: stops this process (SIGSTOP); never returns",
       .params = {},
       .impl = [](const plugd::sdk::Args&)
           -> absl::StatusOr<google::protobuf::Value> {
         raise(SIGSTOP);
         return absl::InternalError("hang: continued (SIGCONT)");
       }});
  plugin.AddFunction(
      {.name = "echo",
       .help = "echo X: returns X",
       .params = {Param::Required("x", Kind::kAny, "the value returned")},
       .impl = [](const plugd::sdk::Args& args)
           -> absl::StatusOr<google::protobuf::Value> { return args[0]; }});
  plugin.AddFunction({.name = "set_serving",
                      .help = "set_serving BOOL: sets the plugin's health",
                      .params = {Param::Required("serving", Kind::kBool)},
                      .impl = [&plugin](const plugd::sdk::Args& args)
                          -> absl::StatusOr<google::protobuf::Value> {
                        PLUGD_ASSIGN_OR_RETURN(bool serving, args.Bool(0));
                        plugin.SetServing(serving);
                        return google::protobuf::Value();
                      }});
  plugin.AddFunction(
      {.name = "spawn_grandchild",
       .help = "spawn_grandchild: forks a child that ignores SIGTERM and "
               "sleeps forever in this process group; returns its pid",
       .params = {},
       .impl = [](const plugd::sdk::Args&)
           -> absl::StatusOr<google::protobuf::Value> {
         pid_t pid = fork();
         if (pid < 0) {
           return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
         }
         if (pid == 0) {
           // Only async-signal-safe calls after fork in a threaded process.
           signal(SIGTERM, SIG_IGN);
           for (;;) pause();
         }
         return plugd::NumberValue(static_cast<double>(pid));
       }});
  plugin.AddFunction({.name = "pid",
                      .help = "pid: this process's pid",
                      .params = {},
                      .impl = [](const plugd::sdk::Args&)
                          -> absl::StatusOr<google::protobuf::Value> {
                        return plugd::NumberValue(
                            static_cast<double>(getpid()));
                      }});
  plugin.AddFunction({.name = "not_utf8",
                      .help = "not_utf8: answers a string that is not UTF-8",
                      .params = {},
                      .impl = [](const plugd::sdk::Args&)
                          -> absl::StatusOr<google::protobuf::Value> {
                        google::protobuf::Value list;
                        *list.mutable_list_value()->add_values() =
                            plugd::StringValue("ok");
                        *list.mutable_list_value()->add_values() =
                            plugd::StringValue("caf\xe9");
                        return list;
                      }});
  plugin.AddFunction(
      {.name = "allocate",
       .help = "allocate MIB: allocates and touches MIB MiB; aborts when an "
               "allocation fails",
       .params = {Param::Required("mib", Kind::kNumber)},
       .impl = [](const plugd::sdk::Args& args)
           -> absl::StatusOr<google::protobuf::Value> {
         PLUGD_ASSIGN_OR_RETURN(double mib, args.Number(0));
         // No core file litter from the abort below.
         struct rlimit no_core = {0, 0};
         setrlimit(RLIMIT_CORE, &no_core);
         constexpr size_t kBlock = 1 << 20;
         for (int64_t i = 0; i < static_cast<int64_t>(mib); ++i) {
           void* block = malloc(kBlock);  // kept: this is a leak on purpose
           if (block == nullptr) {
             fprintf(stderr, "allocate: out of memory after %lld MiB\n",
                     static_cast<long long>(i));
             abort();
           }
           memset(block, 1, kBlock);
         }
         return plugd::NumberValue(mib);
       }});
  plugin.AddFunction({.name = "burn_cpu",
                      .help = "burn_cpu: spins until killed",
                      .params = {},
                      .impl = [](const plugd::sdk::Args&)
                          -> absl::StatusOr<google::protobuf::Value> {
                        struct rlimit no_core = {0, 0};
                        setrlimit(RLIMIT_CORE, &no_core);
                        volatile uint64_t n = 0;
                        for (;;) n = n + 1;
                      }});
  plugin.AddFunction(
      {.name = "garbage",
       .help = "garbage N: writes N chunks of binary garbage to stdout",
       .params = {Param::Required("n", Kind::kNumber)},
       .impl = [](const plugd::sdk::Args& args)
           -> absl::StatusOr<google::protobuf::Value> {
         PLUGD_ASSIGN_OR_RETURN(double n, args.Number(0));
         std::string chunk;
         for (int i = 0; i < 256; ++i) chunk.push_back(static_cast<char>(i));
         chunk += "\n\xff\xfe\xc3\x28 not utf-8 \x00\x1b[31m\r\n";
         chunk += std::string(64 * 1024, '\xc0') + "\n";
         chunk += "{\"level\":\"error\",\"msg\":\x00}\n[WARN\n\n";
         for (int i = 0; i < static_cast<int>(n); ++i) {
           if (!WriteAll(1, chunk)) {
             return absl::InternalError("garbage: stdout is closed");
           }
         }
         return google::protobuf::Value();
       }});
  plugin.AddFunction(
      {.name = "flood_stderr",
       .help = "flood_stderr BYTES: writes about BYTES of stderr lines",
       .params = {Param::Required("bytes", Kind::kNumber)},
       .impl = [](const plugd::sdk::Args& args)
           -> absl::StatusOr<google::protobuf::Value> {
         PLUGD_ASSIGN_OR_RETURN(double bytes, args.Number(0));
         const std::string pad(200, 'f');
         double written = 0;
         for (uint64_t i = 0; written < bytes; ++i) {
           std::string line = absl::StrCat("[INFO] flood ", i, " ", pad, "\n");
           if (!WriteAll(2, line)) break;
           written += static_cast<double>(line.size());
         }
         return plugd::NumberValue(written);
       }});
  plugin.AddFunction(
      {.name = "exit",
       .help = "exit CODE MS: answers, then exits with CODE after MS ms",
       .params = {Param::Required("code", Kind::kNumber),
                  Param::Required("ms", Kind::kNumber)},
       .impl = [](const plugd::sdk::Args& args)
           -> absl::StatusOr<google::protobuf::Value> {
         PLUGD_ASSIGN_OR_RETURN(double code, args.Number(0));
         PLUGD_ASSIGN_OR_RETURN(double ms, args.Number(1));
         std::thread([code, ms] {
           absl::SleepFor(absl::Milliseconds(ms));
           std::_Exit(static_cast<int>(code));
         }).detach();
         return google::protobuf::Value();
       }});
  std::thread flooder;
  if (flood) {
    plugin.OnStart([&flooder]() {
      flooder = std::thread(Flood);
      return absl::OkStatus();
    });
  }
  int code = plugin.Serve();
  g_flooding = false;
  if (flooder.joinable()) flooder.detach();
  return code;
}
