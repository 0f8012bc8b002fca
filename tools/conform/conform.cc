#include "conform.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "plugd/broker/socket.h"
#include "plugd/common/channel.h"
#include "plugd/common/protocol.h"
#include "plugd/common/status.h"
#include "plugd/v1/plugin.grpc.pb.h"
#include "process.h"

namespace plugd::conform {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// The versions the versions check offers to find the plugin's choice.
constexpr uint32_t kWideVersionsMax = 32;
// A version no plugin is expected to support.
constexpr char kUnsupportedVersion[] = "99";
constexpr char kMalformedVersions[] = "not-a-version";
constexpr char kWrongCookie[] = "not-the-plugd-cookie";
constexpr char kNoSuchFunction[] = "plugd-conform-no-such-function";

struct Outcome {
  bool passed = false;
  std::string reason;
};
Outcome Pass(std::string reason) { return {true, std::move(reason)}; }
Outcome Fail(std::string reason) { return {false, std::move(reason)}; }

std::string Ms(absl::Duration d) {
  return absl::StrCat(absl::ToInt64Milliseconds(d), " ms");
}

std::string Dur(absl::Duration d) {
  return absl::FormatDuration(absl::Trunc(d, absl::Milliseconds(1)));
}

std::string Q(absl::string_view text) { return QuoteForMessage(text, 160); }

// The length of the valid UTF-8 sequence at text[i], 0 if there is none.
size_t Utf8Length(absl::string_view text, size_t i) {
  const unsigned char c = static_cast<unsigned char>(text[i]);
  size_t extra;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c < 0xe0) {
    extra = 1;
  } else if (c >= 0xe0 && c < 0xf0) {
    extra = 2;
  } else if (c >= 0xf0 && c < 0xf5) {
    extra = 3;
  } else {
    return 0;
  }
  if (i + extra >= text.size()) return 0;
  for (size_t k = 1; k <= extra; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) return 0;
  }
  return extra + 1;
}

// The last `n` lines, quoted: "a", "b"; "(none)" when there are none.
std::string LastLines(const std::vector<std::string>& lines, size_t n = 3) {
  if (lines.empty()) return "(none)";
  std::vector<std::string> quoted;
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size();
       ++i) {
    quoted.push_back(Q(lines[i]));
  }
  return absl::StrJoin(quoted, ", ");
}

std::string GrpcText(const grpc::Status& status) {
  return FromGrpcStatus(status).ToString();
}

std::string VersionRange(uint32_t from, uint32_t to,
                         std::optional<uint32_t> except = std::nullopt) {
  std::vector<uint32_t> versions;
  for (uint32_t v = from; v <= to; ++v) {
    if (!except || v != *except) versions.push_back(v);
  }
  return FormatVersionList(versions);
}

// A private socket directory and the PluginRun launched with it. Destroying
// it SIGKILLs what is left of the plugin (its group and every descendant)
// and removes the directory.
struct Launch {
  std::string dir;
  std::string socket;
  std::string versions;  // PLUGD_PROTOCOL_VERSIONS given
  std::unique_ptr<PluginRun> run;

  Launch() = default;
  Launch(const Launch&) = delete;
  Launch& operator=(const Launch&) = delete;
  ~Launch() {
    run.reset();
    KillDescendants();
    if (!dir.empty()) broker::RemoveSocketDir(dir);
  }
};

// A launch that hand-shook, with a channel to what it announced.
struct Session {
  std::unique_ptr<Launch> launch;
  Handshake handshake;
  std::shared_ptr<grpc::Channel> channel;
};

class Checker {
 public:
  explicit Checker(const Options& options) : options_(options) {
    name_ = options.name;
    if (name_.empty()) {
      absl::string_view base = options.command[0];
      base = base.substr(base.rfind('/') + 1);
      name_ = base.empty() ? "plugin" : std::string(base);
    }
  }

  Outcome Run(absl::string_view check) {
    if (check == "cookie") return Cookie();
    if (check == "handshake") return HandshakeLine();
    if (check == "versions") return Versions();
    if (check == "health") return HealthCheck();
    if (check == "describe") return DescribeCheck();
    if (check == "functions") return FunctionsCheck();
    if (check == "stdout-logs") return StdoutLogs();
    if (check == "shutdown-call") return ShutdownCall();
    if (check == "shutdown-sigterm") return ShutdownSigterm();
    if (check == "no-leftovers") return NoLeftovers();
    return Fail(absl::StrCat("unknown check ", check));
  }

 private:
  enum class CookieMode { kRight, kMissing, kWrong };

  absl::Time Deadline() const { return absl::Now() + options_.timeout; }

  // Starts the plugin with the launch environment of docs/protocol.md §1.
  absl::StatusOr<std::unique_ptr<Launch>> Start(const std::string& versions,
                                                CookieMode cookie) {
    auto launch = std::make_unique<Launch>();
    absl::StatusOr<std::string> dir = broker::MakeSocketDir();
    if (!dir.ok()) return dir.status();
    launch->dir = *dir;
    launch->socket = *dir + "/p.sock";
    launch->versions = versions;
    SpawnOptions spawn;
    spawn.command = options_.command;
    // Nothing of a launcher that may have started this checker leaks in.
    spawn.unset = {"PLUGD_*", kEnvGoPluginProtocolVersions, kEnvGoPluginMinPort,
                   kEnvGoPluginMaxPort};
    spawn.unset.insert(spawn.unset.end(), options_.unset_for_plugin.begin(),
                       options_.unset_for_plugin.end());
    if (cookie == CookieMode::kRight) {
      spawn.env[kEnvMagicCookieKey] = kMagicCookieValue;
    } else if (cookie == CookieMode::kWrong) {
      spawn.env[kEnvMagicCookieKey] = kWrongCookie;
    }
    spawn.env[kEnvSocket] = launch->socket;
    spawn.env[kEnvProtocolVersions] = versions;
    spawn.env[kEnvPluginName] = name_;
    spawn.env[kEnvMaxMessageBytes] = absl::StrCat(kDefaultMaxMessageBytes);
    spawn.env[kEnvShutdownGraceMs] =
        absl::StrCat(absl::ToInt64Milliseconds(options_.grace));
    absl::StatusOr<std::unique_ptr<PluginRun>> run = PluginRun::Start(spawn);
    if (!run.ok()) return run.status();
    launch->run = *std::move(run);
    return launch;
  }

  // What a launch did instead of printing a handshake line, for reasons.
  static std::string NoHandshake(Launch& launch, absl::Duration waited) {
    PluginRun& run = *launch.run;
    if (std::optional<broker::ExitStatus> exit = run.exit_status()) {
      run.WaitOutputEnd(absl::Now() + absl::Seconds(1));
      return absl::StrCat(exit->ToString(), " ",
                          Ms(run.exit_time() - run.started()),
                          " after exec, before printing a handshake line; "
                          "last stderr lines: ",
                          LastLines(run.StderrLines()));
    }
    std::vector<std::string> out = run.StdoutLines();
    if (!out.empty()) {
      return absl::StrCat(
          "closed stdout after printing only ", Q(out[0]),
          " (no newline); stderr: ", LastLines(run.StderrLines()));
    }
    return absl::StrCat(
        "printed no handshake line within ", Dur(waited),
        " (--timeout); stderr so far: ", LastLines(run.StderrLines()));
  }

  // Launches with the cookie and `versions` and reads the handshake; the
  // channel goes to the announced address. Lenient about the line's details
  // (the handshake check is strict), so later checks can still run.
  absl::StatusOr<std::unique_ptr<Session>> StartServing(
      const std::string& versions) {
    absl::StatusOr<std::unique_ptr<Launch>> launch =
        Start(versions, CookieMode::kRight);
    if (!launch.ok()) return launch.status();
    auto session = std::make_unique<Session>();
    session->launch = *std::move(launch);
    PluginRun& run = *session->launch->run;
    std::optional<std::string> line = run.WaitFirstStdoutLine(Deadline());
    if (!line || run.first_line_time() == absl::InfinitePast()) {
      return absl::UnavailableError(
          absl::StrCat("the plugin did not start: it ",
                       NoHandshake(*session->launch, options_.timeout)));
    }
    absl::StatusOr<Handshake> handshake = ParseHandshake(*line);
    if (!handshake.ok()) {
      return absl::UnavailableError(
          absl::StrCat("the plugin did not start: it printed ", Q(*line),
                       " instead of a handshake line"));
    }
    if (handshake->protocol != "grpc") {
      return absl::UnavailableError(absl::StrCat(
          "the plugin did not start: its handshake ", Q(*line),
          " asks for protocol ", Q(handshake->protocol), ", not grpc"));
    }
    session->handshake = *handshake;
    grpc::ChannelArguments args;
    SetLocalReconnectArguments(&args);
    args.SetMaxReceiveMessageSize(static_cast<int>(kDefaultMaxMessageBytes));
    args.SetMaxSendMessageSize(static_cast<int>(kDefaultMaxMessageBytes));
    session->channel = grpc::CreateCustomChannel(
        handshake->GrpcTarget(), grpc::InsecureChannelCredentials(), args);
    return session;
  }

  absl::StatusOr<std::unique_ptr<Session>> StartServing() {
    return StartServing(FormatVersionList(options_.versions));
  }

  void SetDeadline(grpc::ClientContext* context) {
    context->set_deadline(absl::ToChronoTime(Deadline()));
  }

  grpc::Status Check(Session& session, const std::string& service,
                     HealthCheckResponse::ServingStatus* status) {
    grpc::ClientContext context;
    SetDeadline(&context);
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    grpc::Status s =
        Health::NewStub(session.channel)->Check(&context, request, &response);
    *status = response.status();
    return s;
  }

  grpc::Status Describe(Session& session, v1::DescribeResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    return v1::Control::NewStub(session.channel)
        ->Describe(&context, v1::DescribeRequest(), response);
  }

  grpc::Status ShutdownRpc(Session& session) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::ShutdownRequest request;
    request.set_reason("plugd-conform");
    v1::ShutdownResponse response;
    return v1::Control::NewStub(session.channel)
        ->Shutdown(&context, request, &response);
  }

  // After the plugin exited by itself: waits up to the grace for its
  // descendants to go, and records those that did not (no-leftovers reports
  // them; the Launch destructor kills them).
  void ObserveLeftovers(const std::string& when) {
    ++exits_observed_;
    std::vector<ProcessInfo> left =
        WaitDescendantsGone(absl::Now() + options_.grace);
    for (const ProcessInfo& p : left) {
      leftovers_.push_back(
          absl::StrCat(p.ToString(), " was still alive ", Dur(options_.grace),
                       " after the plugin exited (", when, ")"));
    }
  }

  // ---- cookie -----------------------------------------------------------

  Outcome Cookie() {
    std::vector<std::string> passed;
    for (CookieMode cookie : {CookieMode::kMissing, CookieMode::kWrong}) {
      const std::string how =
          cookie == CookieMode::kMissing
              ? absl::StrCat("without ", kEnvMagicCookieKey)
              : absl::StrCat("with ", kEnvMagicCookieKey, "=", kWrongCookie);
      absl::StatusOr<std::unique_ptr<Launch>> launch =
          Start(FormatVersionList(options_.versions), cookie);
      if (!launch.ok()) return Fail(launch.status().ToString());
      PluginRun& run = *(*launch)->run;
      const absl::Time deadline = Deadline();
      // A handshake fails at once; otherwise wait for the exit.
      std::optional<std::string> line = run.WaitFirstStdoutLine(deadline);
      if (line && ParseHandshake(*line).ok()) {
        return Fail(absl::StrCat(how, " it printed the handshake line ",
                                 Q(*line),
                                 "; without the right cookie a plugin MUST "
                                 "explain on stderr and exit non-zero"));
      }
      std::optional<broker::ExitStatus> exit = run.WaitExit(deadline);
      if (!exit) {
        return Fail(absl::StrCat(
            how, " it was still running after ", Dur(options_.timeout),
            " (--timeout); stdout: ", LastLines(run.StdoutLines()),
            "; stderr: ", LastLines(run.StderrLines()),
            "; it MUST explain on stderr and exit non-zero"));
      }
      run.WaitOutputEnd(absl::Now() + absl::Seconds(1));
      for (const std::string& l : run.StdoutLines()) {
        if (ParseHandshake(l).ok()) {
          return Fail(absl::StrCat(how, " it printed the handshake line ", Q(l),
                                   " and ", exit->ToString()));
        }
      }
      if (exit->success()) {
        return Fail(absl::StrCat(how,
                                 " it exited with code 0; it MUST exit "
                                 "non-zero (the SDKs use 1)"));
      }
      std::vector<std::string> err = run.StderrLines();
      if (err.empty()) {
        return Fail(absl::StrCat(
            how, " it ", exit->ToString(),
            " but printed nothing on stderr; it MUST print a short human "
            "explanation there (that it is a plugd plugin, how to run it)"));
      }
      struct stat st;
      if (::lstat((*launch)->socket.c_str(), &st) == 0) {
        return Fail(absl::StrCat(how, " it created ", (*launch)->socket,
                                 " (PLUGD_SOCKET); it MUST NOT listen"));
      }
      passed.push_back(absl::StrCat(how, ": ", exit->ToString(), ", stderr ",
                                    Q(err.front())));
      ObserveLeftovers(absl::StrCat("refusing to run ", how));
    }
    return Pass(absl::StrJoin(passed, "; "));
  }

  // ---- handshake --------------------------------------------------------

  Outcome HandshakeLine() {
    absl::StatusOr<std::unique_ptr<Launch>> launch =
        Start(FormatVersionList(options_.versions), CookieMode::kRight);
    if (!launch.ok()) return Fail(launch.status().ToString());
    PluginRun& run = *(*launch)->run;
    std::optional<std::string> line = run.WaitFirstStdoutLine(Deadline());
    if (!line || run.first_line_time() == absl::InfinitePast()) {
      return Fail(absl::StrCat("it ", NoHandshake(**launch, options_.timeout),
                               "; the first stdout line MUST be the "
                               "handshake, flushed at once"));
    }
    const absl::Duration after = run.first_line_time() - run.started();
    absl::StatusOr<Handshake> h = ParseHandshake(*line);
    if (!h.ok()) {
      return Fail(absl::StrCat("the first stdout line is not a handshake: ",
                               h.status().message()));
    }
    const std::string quoted = Q(*line);
    if (h->core_version != kCoreProtocolVersion) {
      return Fail(absl::StrCat(quoted, " has core version ", h->core_version,
                               "; it MUST be ", kCoreProtocolVersion));
    }
    if (std::find(options_.versions.begin(), options_.versions.end(),
                  h->app_version) == options_.versions.end()) {
      return Fail(
          absl::StrCat(quoted, " has app version ", h->app_version,
                       ", which was not offered (PLUGD_PROTOCOL_VERSIONS=",
                       FormatVersionList(options_.versions), ")"));
    }
    if (h->network != "unix") {
      return Fail(absl::StrCat(quoted, " has network ", Q(h->network),
                               "; plugd plugins announce unix"));
    }
    if (h->address != (*launch)->socket) {
      return Fail(absl::StrCat(quoted, " announces ", Q(h->address),
                               ", not PLUGD_SOCKET ", Q((*launch)->socket),
                               "; a plugin MUST listen on PLUGD_SOCKET"));
    }
    if (h->protocol != "grpc") {
      return Fail(absl::StrCat(quoted, " has protocol ", Q(h->protocol),
                               "; it MUST be grpc"));
    }
    if (absl::EndsWith(*line, "\r")) {
      return Fail(absl::StrCat(quoted, " ends with \\r\\n; print \\n only"));
    }
    // It MUST listen before printing: connect right now.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, h->address.c_str(), sizeof(addr.sun_path) - 1);
    const int rc =
        ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    const int connect_errno = errno;
    ::close(fd);
    if (rc != 0) {
      return Fail(absl::StrCat(
          "printed ", quoted, " but connecting to it right after failed (",
          std::strerror(connect_errno),
          "); a plugin MUST listen before it prints the handshake"));
    }
    return Pass(absl::StrCat("printed ", quoted, " ", Ms(after),
                             " after exec, already listening"));
  }

  // ---- versions ---------------------------------------------------------

  // A launch with `versions` that must be refused: no handshake, exit
  // non-zero, an explanation on stderr. Empty on success, else the reason.
  std::string ExpectRefusal(const std::string& versions, std::string* note) {
    const std::string how =
        absl::StrCat("with ", kEnvProtocolVersions, "=", versions);
    absl::StatusOr<std::unique_ptr<Launch>> launch =
        Start(versions, CookieMode::kRight);
    if (!launch.ok()) return launch.status().ToString();
    PluginRun& run = *(*launch)->run;
    const absl::Time deadline = Deadline();
    std::optional<std::string> line = run.WaitFirstStdoutLine(deadline);
    if (line && ParseHandshake(*line).ok()) {
      return absl::StrCat(how, " it printed the handshake ", Q(*line),
                          "; with no valid version in common it MUST NOT "
                          "hand-shake but exit non-zero");
    }
    std::optional<broker::ExitStatus> exit = run.WaitExit(deadline);
    if (!exit) {
      return absl::StrCat(
          how, " it was still running after ", Dur(options_.timeout),
          " (--timeout); stdout: ", LastLines(run.StdoutLines()),
          "; stderr: ", LastLines(run.StderrLines()),
          "; it MUST exit non-zero");
    }
    run.WaitOutputEnd(absl::Now() + absl::Seconds(1));
    if (exit->success()) {
      return absl::StrCat(how,
                          " it exited with code 0; it MUST exit "
                          "non-zero");
    }
    std::vector<std::string> err = run.StderrLines();
    if (err.empty()) {
      return absl::StrCat(how, " it ", exit->ToString(),
                          " but printed nothing on stderr; it MUST print an "
                          "error listing both sides' versions");
    }
    *note = absl::StrCat(how, ": refused (", exit->ToString(), ", stderr ",
                         Q(err.back()), ")");
    ObserveLeftovers(absl::StrCat("refusing ", how));
    return "";
  }

  // A launch with `versions` that may hand-shake. Returns the chosen
  // version, nullopt when refused, or an error reason in *problem.
  std::optional<uint32_t> Choose(const std::string& versions,
                                 std::string* problem) {
    absl::StatusOr<std::unique_ptr<Launch>> launch =
        Start(versions, CookieMode::kRight);
    if (!launch.ok()) {
      *problem = launch.status().ToString();
      return std::nullopt;
    }
    PluginRun& run = *(*launch)->run;
    std::optional<std::string> line = run.WaitFirstStdoutLine(Deadline());
    if (!line || run.first_line_time() == absl::InfinitePast()) {
      // stdout may end a moment before the exit is reaped.
      if (std::optional<broker::ExitStatus> exit = run.WaitExit(Deadline())) {
        if (!exit->success()) return std::nullopt;  // refused
      }
      *problem = absl::StrCat("with ", kEnvProtocolVersions, "=", versions,
                              " it ", NoHandshake(**launch, options_.timeout));
      return std::nullopt;
    }
    absl::StatusOr<Handshake> h = ParseHandshake(*line);
    if (!h.ok()) {
      *problem =
          absl::StrCat("with ", kEnvProtocolVersions, "=", versions,
                       " it printed ", Q(*line), ", not a handshake line");
      return std::nullopt;
    }
    return h->app_version;
  }

  Outcome Versions() {
    std::vector<std::string> notes;
    std::string note;
    for (const char* versions : {kUnsupportedVersion, kMalformedVersions}) {
      std::string problem = ExpectRefusal(versions, &note);
      if (!problem.empty()) return Fail(problem);
      notes.push_back(note);
    }
    const std::string wide = VersionRange(1, kWideVersionsMax);
    std::string problem;
    std::optional<uint32_t> chosen = Choose(wide, &problem);
    if (!problem.empty()) return Fail(problem);
    if (!chosen) {
      return Fail(absl::StrCat("with ", kEnvProtocolVersions, "=", wide,
                               " it refused to start: the checker expects a "
                               "plugin to support a version in 1..",
                               kWideVersionsMax));
    }
    if (*chosen < 1 || *chosen > kWideVersionsMax) {
      return Fail(absl::StrCat("offered 1..", kWideVersionsMax,
                               ", it chose version ", *chosen,
                               ", which was not offered"));
    }
    notes.push_back(
        absl::StrCat("offered 1..", kWideVersionsMax, ": chose ", *chosen));
    const std::string without = VersionRange(1, kWideVersionsMax, *chosen);
    std::optional<uint32_t> second = Choose(without, &problem);
    if (!problem.empty()) return Fail(problem);
    if (!second) {
      notes.push_back(absl::StrCat("offered 1..", kWideVersionsMax, " without ",
                                   *chosen, ": refused"));
    } else if (*second == *chosen || *second < 1 ||
               *second > kWideVersionsMax) {
      return Fail(absl::StrCat("offered 1..", kWideVersionsMax, " without ",
                               *chosen, ", it chose version ", *second,
                               ", which was not offered"));
    } else if (*second > *chosen) {
      return Fail(absl::StrCat(
          "offered 1..", kWideVersionsMax, " it chose ", *chosen,
          ", but it supports ", *second, " (chosen when ", *chosen,
          " was not offered): it MUST pick the highest version in common"));
    } else {
      notes.push_back(absl::StrCat("offered 1..", kWideVersionsMax, " without ",
                                   *chosen, ": chose ", *second));
    }
    return Pass(absl::StrJoin(notes, "; "));
  }

  // ---- health -----------------------------------------------------------

  Outcome HealthCheck() {
    absl::StatusOr<std::unique_ptr<Session>> session = StartServing();
    if (!session.ok()) return Fail(std::string(session.status().message()));
    for (const std::string service : {"", kHealthServicePlugin}) {
      HealthCheckResponse::ServingStatus status;
      grpc::Status s = Check(**session, service, &status);
      const std::string what =
          absl::StrCat("grpc.health.v1.Health/Check(", Q(service), ")");
      if (!s.ok()) {
        return Fail(absl::StrCat(what, " failed: ", GrpcText(s),
                                 "; it MUST answer SERVING"));
      }
      if (status != HealthCheckResponse::SERVING) {
        return Fail(absl::StrCat(
            what, " answered ", HealthCheckResponse::ServingStatus_Name(status),
            "; it MUST answer SERVING while healthy"));
      }
    }
    return Pass("Check(\"\") and Check(\"plugin\") answered SERVING");
  }

  // ---- describe ---------------------------------------------------------

  Outcome DescribeCheck() {
    absl::StatusOr<std::unique_ptr<Session>> session = StartServing();
    if (!session.ok()) return Fail(std::string(session.status().message()));
    v1::DescribeResponse d;
    grpc::Status s = Describe(**session, &d);
    if (!s.ok()) {
      return Fail(
          absl::StrCat("plugd.v1.Control/Describe failed: ", GrpcText(s)));
    }
    std::vector<std::string> problems;
    if (d.name().empty()) problems.push_back("its name is empty");
    if (d.version().empty()) problems.push_back("its version is empty");
    if (d.core_protocol_version() != kCoreProtocolVersion) {
      problems.push_back(absl::StrCat("core_protocol_version is ",
                                      d.core_protocol_version(), ", not ",
                                      kCoreProtocolVersion));
    }
    if (d.protocol_version() != (*session)->handshake.app_version) {
      problems.push_back(absl::StrCat(
          "protocol_version is ", d.protocol_version(),
          " but the handshake announced ", (*session)->handshake.app_version));
    }
    for (const char* required : {"grpc.health.v1.Health", "plugd.v1.Control"}) {
      if (std::find(d.services().begin(), d.services().end(), required) ==
          d.services().end()) {
        problems.push_back(absl::StrCat("services does not list ", required));
      }
    }
    const pid_t leader = (*session)->launch->run->pid();
    bool pid_ok = d.pid() == leader;
    if (!pid_ok) {
      for (const ProcessInfo& p : Descendants({leader})) {
        if (p.pid == d.pid()) pid_ok = true;
      }
    }
    if (!pid_ok) {
      problems.push_back(absl::StrCat("pid is ", d.pid(),
                                      ", not the launched process ", leader,
                                      " or one of its descendants"));
    }
    const std::string described = absl::StrCat(
        "name ", Q(d.name()), ", version ", Q(d.version()), ", protocol ",
        d.protocol_version(), ", services [", absl::StrJoin(d.services(), ", "),
        "], ", d.functions_size(), " functions, pid ", d.pid());
    if (!problems.empty()) {
      return Fail(absl::StrCat("Describe answered ", described, ": ",
                               absl::StrJoin(problems, "; ")));
    }
    return Pass(described);
  }

  // ---- functions --------------------------------------------------------

  grpc::Status Call(Session& session, const std::string& function, int args,
                    v1::CallResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::CallRequest request;
    request.set_function(function);
    for (int i = 0; i < args; ++i) request.add_args()->set_number_value(0);
    return v1::Functions::NewStub(session.channel)
        ->Call(&context, request, response);
  }

  Outcome FunctionsCheck() {
    absl::StatusOr<std::unique_ptr<Session>> session = StartServing();
    if (!session.ok()) return Fail(std::string(session.status().message()));
    v1::DescribeResponse d;
    grpc::Status s = Describe(**session, &d);
    if (!s.ok()) {
      return Fail(absl::StrCat(
          "cannot tell whether it serves plugd.v1.Functions: Describe "
          "failed: ",
          GrpcText(s)));
    }
    const bool claimed =
        std::find(d.services().begin(), d.services().end(),
                  "plugd.v1.Functions") != d.services().end() ||
        d.functions_size() > 0;
    v1::ListFunctionsResponse list;
    {
      grpc::ClientContext context;
      SetDeadline(&context);
      s = v1::Functions::NewStub((*session)->channel)
              ->ListFunctions(&context, v1::ListFunctionsRequest(), &list);
    }
    if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED && !claimed) {
      return Pass(
          "not served: Describe does not claim plugd.v1.Functions and "
          "ListFunctions is UNIMPLEMENTED");
    }
    if (!s.ok()) {
      return Fail(absl::StrCat(
          "Describe claims plugd.v1.Functions but ListFunctions failed: ",
          GrpcText(s)));
    }
    if (!claimed) {
      return Fail(absl::StrCat("it serves plugd.v1.Functions (",
                               list.functions_size(),
                               " functions) but Describe's services does not "
                               "list it"));
    }
    std::vector<std::string> names;
    for (const v1::FunctionInfo& f : list.functions()) {
      if (f.name().empty())
        return Fail("ListFunctions has a nameless function");
      if (!names.empty() && !(names.back() < f.name())) {
        return Fail(
            absl::StrCat("ListFunctions is not sorted by name (or has "
                         "duplicates): ",
                         Q(names.back()), " before ", Q(f.name())));
      }
      if (f.max_args() != -1 &&
          (f.max_args() < 0 ||
           static_cast<uint32_t>(f.max_args()) < f.min_args())) {
        return Fail(absl::StrCat("function ", f.name(), " has min_args ",
                                 f.min_args(), " and max_args ", f.max_args(),
                                 "; max_args is -1 or at least min_args"));
      }
      names.push_back(f.name());
    }
    std::vector<std::string> described;
    for (const v1::FunctionInfo& f : d.functions())
      described.push_back(f.name());
    std::vector<std::string> sorted_described = described;
    std::sort(sorted_described.begin(), sorted_described.end());
    if (sorted_described != names) {
      return Fail(absl::StrCat(
          "Describe lists functions [", absl::StrJoin(described, ", "),
          "] but ListFunctions lists [", absl::StrJoin(names, ", "), "]"));
    }
    std::vector<std::string> notes = {absl::StrCat(
        names.size(), " functions (", absl::StrJoin(names, ", "), ")")};

    v1::CallResponse response;
    s = Call(**session, kNoSuchFunction, 0, &response);
    if (s.error_code() != grpc::StatusCode::NOT_FOUND) {
      return Fail(absl::StrCat("Call(", Q(kNoSuchFunction), ") answered ",
                               s.ok() ? "OK" : GrpcText(s),
                               "; an unknown function MUST be NOT_FOUND"));
    }
    for (const std::string& name : names) {
      if (!absl::StrContains(s.error_message(), name)) {
        return Fail(absl::StrCat(
            "Call(", Q(kNoSuchFunction), ") answered NOT_FOUND ",
            Q(s.error_message()), ", which does not name the offered function ",
            Q(name), "; the message MUST list the names the plugin offers"));
      }
    }
    notes.push_back(
        absl::StrCat("unknown function: NOT_FOUND ", Q(s.error_message())));

    // A wrong number of arguments MUST be INVALID_ARGUMENT.
    for (const v1::FunctionInfo& f : list.functions()) {
      int args = -1;
      if (f.min_args() > 0) {
        args = 0;
      } else if (f.max_args() >= 0) {
        args = f.max_args() + 1;
      } else {
        continue;
      }
      s = Call(**session, f.name(), args, &response);
      if (s.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
        return Fail(absl::StrCat(
            "Call(", Q(f.name()), ") with ", args, " arguments (it takes ",
            f.min_args(), " to ",
            f.max_args() < 0 ? std::string("any number")
                             : absl::StrCat(f.max_args()),
            ") answered ", s.ok() ? "OK" : GrpcText(s),
            "; a wrong number of arguments MUST be INVALID_ARGUMENT"));
      }
      notes.push_back(absl::StrCat(f.name(), " with ", args,
                                   " arguments: INVALID_ARGUMENT ",
                                   Q(s.error_message())));
      break;
    }
    return Pass(absl::StrJoin(notes, "; "));
  }

  // ---- stdout-logs ------------------------------------------------------

  // Stops a session like a launcher: Shutdown call, then SIGTERM, then
  // SIGKILL, each after the grace. Returns how far it had to go.
  std::string StopLikeALauncher(Session& session) {
    PluginRun& run = *session.launch->run;
    if (run.exit_status()) return "it had exited already";
    // A failed call means SIGTERM at once, as launchers do.
    if (ShutdownRpc(session).ok() &&
        run.WaitExit(absl::Now() + options_.grace)) {
      return "Shutdown call";
    }
    run.SignalGroup(SIGTERM);
    if (run.WaitExit(absl::Now() + options_.grace)) return "SIGTERM";
    run.SignalGroup(SIGKILL);
    run.WaitExit(absl::Now() + absl::Seconds(5));
    return "SIGKILL";
  }

  // True when `line` is text: UTF-8, no control characters but tab (and
  // the ESC of colour codes). Else *bad_at is the offending byte's offset.
  static bool IsText(absl::string_view line, size_t* bad_at) {
    for (size_t i = 0; i < line.size();) {
      const unsigned char c = static_cast<unsigned char>(line[i]);
      const size_t n = Utf8Length(line, i);
      if (n == 0 || (c < 0x20 && c != '\t' && c != 0x1b) || c == 0x7f) {
        *bad_at = i;
        return false;
      }
      i += n;
    }
    return true;
  }

  Outcome StdoutLogs() {
    absl::StatusOr<std::unique_ptr<Session>> session = StartServing();
    if (!session.ok()) return Fail(std::string(session.status().message()));
    PluginRun& run = *(*session)->launch->run;
    HealthCheckResponse::ServingStatus status;
    grpc::Status s = Check(**session, "", &status);
    if (!s.ok()) {
      return Fail(
          absl::StrCat("health Check failed right after the "
                       "handshake: ",
                       GrpcText(s)));
    }
    v1::DescribeResponse d;
    Describe(**session, &d);  // only to make it work (and maybe log)
    // Watch it serve for a while: its stdout is drained as log lines.
    if (std::optional<broker::ExitStatus> exit =
            run.WaitExit(absl::Now() + options_.observe)) {
      run.WaitOutputEnd(absl::Now() + absl::Seconds(1));
      std::vector<std::string> after = run.StdoutLines();
      after.erase(after.begin());  // the handshake
      return Fail(absl::StrCat(
          "it ", exit->ToString(), " ",
          Ms(run.exit_time() - run.first_line_time()),
          " after its handshake, unasked; stdout after the handshake: ",
          LastLines(after), "; stderr: ", LastLines(run.StderrLines())));
    }
    // Still serving: health answers (SERVING or not is the health check's
    // business).
    s = Check(**session, "", &status);
    if (!s.ok()) {
      return Fail(absl::StrCat(
          "after ", Dur(options_.observe),
          " it no longer serves: health Check failed: ", GrpcText(s)));
    }
    const std::string stopped = StopLikeALauncher(**session);
    run.WaitOutputEnd(absl::Now() + absl::Seconds(1));
    std::vector<std::string> lines = run.StdoutLines();
    lines.erase(lines.begin());  // the handshake
    int handshake_like = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      size_t bad_at = 0;
      if (!IsText(lines[i], &bad_at)) {
        return Fail(absl::StrCat(
            "stdout line ", i + 2, " (after the handshake) is not text: ",
            Q(lines[i]), " has a control or non-UTF-8 byte at offset ", bad_at,
            "; everything after the handshake is read as log lines, so write "
            "text, one line per message"));
      }
      if (ParseHandshake(lines[i]).ok()) ++handshake_like;
    }
    std::string reason = absl::StrCat(
        "kept serving for ", Dur(options_.observe), " after its handshake");
    if (lines.empty()) {
      absl::StrAppend(&reason, "; wrote nothing more to stdout (stopped by ",
                      stopped, ")");
    } else {
      absl::StrAppend(&reason, "; ", lines.size(),
                      " stdout line(s) after the handshake, read as logs: ",
                      LastLines(lines));
    }
    if (handshake_like > 0) {
      absl::StrAppend(&reason, " (", handshake_like,
                      " look like another handshake line: only the first "
                      "line is the handshake, these are just logs)");
    }
    return Pass(reason);
  }

  // ---- shutdown ---------------------------------------------------------

  // Waits up to the grace for the exit that `how` asked for.
  Outcome ExpectGracefulExit(Session& session, const std::string& how) {
    PluginRun& run = *session.launch->run;
    const absl::Time asked = absl::Now();
    std::optional<broker::ExitStatus> exit =
        run.WaitExit(asked + options_.grace);
    if (!exit) {
      return Fail(absl::StrCat("still running ", Dur(options_.grace),
                               " (--grace) after ", how,
                               "; it MUST shut down within "
                               "PLUGD_SHUTDOWN_GRACE_MS; last stderr lines: ",
                               LastLines(run.StderrLines())));
    }
    ObserveLeftovers(absl::StrCat("after ", how));
    if (!exit->success()) {
      run.WaitOutputEnd(absl::Now() + absl::Seconds(1));
      return Fail(absl::StrCat(exit->ToString(), " after ", how,
                               "; it MUST exit with code 0; last stderr "
                               "lines: ",
                               LastLines(run.StderrLines())));
    }
    return Pass(absl::StrCat("exited with code 0 ", Ms(run.exit_time() - asked),
                             " after ", how));
  }

  Outcome ShutdownCall() {
    absl::StatusOr<std::unique_ptr<Session>> session = StartServing();
    if (!session.ok()) return Fail(std::string(session.status().message()));
    grpc::Status s = ShutdownRpc(**session);
    if (!s.ok()) {
      return Fail(
          absl::StrCat("plugd.v1.Control/Shutdown failed: ", GrpcText(s),
                       "; it MUST answer OK, then shut "
                       "down"));
    }
    return ExpectGracefulExit(**session, "the Shutdown call answered OK");
  }

  Outcome ShutdownSigterm() {
    absl::StatusOr<std::unique_ptr<Session>> session = StartServing();
    if (!session.ok()) return Fail(std::string(session.status().message()));
    // Serving first (a real stop comes to a running plugin).
    HealthCheckResponse::ServingStatus status;
    Check(**session, "", &status);
    (*session)->launch->run->SignalGroup(SIGTERM);
    return ExpectGracefulExit(**session, "SIGTERM to its process group");
  }

  // ---- no-leftovers -----------------------------------------------------

  Outcome NoLeftovers() {
    absl::StatusOr<std::unique_ptr<Session>> session = StartServing();
    if (!session.ok()) {
      return Fail(absl::StrCat("cannot check: ", session.status().message()));
    }
    // Make it work a little (a plugin may start helpers on demand).
    HealthCheckResponse::ServingStatus status;
    Check(**session, "", &status);
    v1::DescribeResponse d;
    Describe(**session, &d);
    v1::ListFunctionsResponse list;
    {
      grpc::ClientContext context;
      SetDeadline(&context);
      v1::Functions::NewStub((*session)->channel)
          ->ListFunctions(&context, v1::ListFunctionsRequest(), &list);
    }
    const std::string stopped = StopLikeALauncher(**session);
    ObserveLeftovers(absl::StrCat("stopped by ", stopped));
    if (!leftovers_.empty()) {
      return Fail(absl::StrCat(absl::StrJoin(leftovers_, "; "),
                               "; the checker killed them. A plugin MUST "
                               "stop every process it started before it "
                               "exits"));
    }
    return Pass(absl::StrCat("no process was left behind after any of the ",
                             exits_observed_, " exits observed"));
  }

  const Options& options_;
  std::string name_;
  int exits_observed_ = 0;
  std::vector<std::string> leftovers_;
};

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else if (c >= 0x80) {
          // Keep valid UTF-8 sequences, replace anything else.
          const size_t n = Utf8Length(text, i);
          if (n > 0) {
            out.append(text.data() + i, n);
            i += n - 1;
          } else {
            out += "\\ufffd";
          }
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out += "\"";
  return out;
}

}  // namespace

bool Report::all_passed() const {
  for (const CheckResult& c : checks) {
    if (!c.passed) return false;
  }
  return true;
}

Report RunChecks(const Options& options) {
  Report report;
  report.command = options.command;
  if (absl::Status s = BecomeSubreaper(); !s.ok()) {
    for (const char* name : kCheckNames) {
      report.checks.push_back(
          {name, false, s.ToString(), absl::ZeroDuration()});
    }
    return report;
  }
  Checker checker(options);
  for (const char* name : kCheckNames) {
    if (!options.only.empty() &&
        std::find(options.only.begin(), options.only.end(), name) ==
            options.only.end()) {
      continue;
    }
    const absl::Time start = absl::Now();
    Outcome outcome = checker.Run(name);
    report.checks.push_back(
        {name, outcome.passed, outcome.reason, absl::Now() - start});
  }
  KillDescendants();
  return report;
}

std::string FormatHuman(const Report& report) {
  std::string out;
  std::vector<std::string> failed;
  for (const CheckResult& c : report.checks) {
    absl::StrAppend(&out, c.passed ? "PASS " : "FAIL ", c.name, " \u2014 ",
                    c.reason, "\n");
    if (!c.passed) failed.push_back(c.name);
  }
  const std::string command = absl::StrJoin(report.command, " ");
  if (failed.empty()) {
    absl::StrAppend(&out, "plugd-conform: all ", report.checks.size(),
                    " checks passed for ", command, "\n");
  } else {
    absl::StrAppend(&out, "plugd-conform: ", failed.size(), " of ",
                    report.checks.size(), " checks failed for ", command, ": ",
                    absl::StrJoin(failed, ", "),
                    " (docs/conformance.md explains each)\n");
  }
  return out;
}

std::string FormatJson(const Report& report) {
  int passed = 0;
  std::vector<std::string> checks;
  for (const CheckResult& c : report.checks) {
    if (c.passed) ++passed;
    checks.push_back(absl::StrCat(
        "{\"name\":", JsonString(c.name), ",\"passed\":",
        c.passed ? "true" : "false", ",\"reason\":", JsonString(c.reason),
        ",\"duration_ms\":", absl::ToInt64Milliseconds(c.duration), "}"));
  }
  std::vector<std::string> command;
  for (const std::string& arg : report.command) {
    command.push_back(JsonString(arg));
  }
  return absl::StrCat("{\"command\":[", absl::StrJoin(command, ","),
                      "],\"passed\":", report.all_passed() ? "true" : "false",
                      ",\"passed_count\":", passed,
                      ",\"failed_count\":", report.checks.size() - passed,
                      ",\"checks\":[", absl::StrJoin(checks, ","), "]}\n");
}

namespace {

constexpr char kUsage[] =
    R"(usage: plugd-conform [FLAGS] [--] COMMAND [ARG...]

Launches the plugin COMMAND several times, as a plugd launcher would, and
checks that it follows the plugd plugin protocol (docs/protocol.md). Prints
one line per check, "PASS name — reason" or "FAIL name — reason", and a
summary. docs/conformance.md explains each check and how to fix a failure.

Checks: cookie, handshake, versions, health, describe, functions,
stdout-logs, shutdown-call, shutdown-sigterm, no-leftovers.

Flags:
  --json             print the results as one JSON object
  --timeout=DUR      hang guard for each thing waited for (a handshake, an
                     exit, an RPC); default 10s
  --grace=DUR        shutdown grace (PLUGD_SHUTDOWN_GRACE_MS): time to exit
                     after the Shutdown call or SIGTERM; default 5s
  --observe=DUR      how long stdout-logs watches the plugin serve; 500ms
  --versions=LIST    PLUGD_PROTOCOL_VERSIONS for the normal launches; 1
  --name=NAME        PLUGD_PLUGIN_NAME; default COMMAND's base name
  --only=CHECK,...   run only these checks
  -h, --help         this text

Exit codes: 0 all checks passed, 1 some check failed, 2 usage error.
Example:
  build/bin/plugd-conform -- build/bin/plugd-random
)";

ParsedCommandLine UsageError(const std::string& message) {
  ParsedCommandLine parsed;
  parsed.kind = ParsedCommandLine::Kind::kUsageError;
  parsed.text = absl::StrCat("plugd-conform: ", message,
                             "\nrun plugd-conform --help for the flags\n");
  return parsed;
}

bool ParsePositiveDuration(const std::string& text, absl::Duration* out) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d <= absl::ZeroDuration()) {
    return false;
  }
  *out = d;
  return true;
}

}  // namespace

ParsedCommandLine ParseCommandLine(const std::vector<std::string>& args) {
  ParsedCommandLine parsed;
  Options& o = parsed.options;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.empty() || arg[0] != '-') break;  // the command starts here
    if (arg == "-h" || arg == "--help") {
      parsed.kind = ParsedCommandLine::Kind::kHelp;
      parsed.text = kUsage;
      return parsed;
    }
    if (arg == "--json") {
      parsed.json = true;
      continue;
    }
    std::string flag = arg;
    std::string value;
    bool has_value = false;
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      flag = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    static const std::set<std::string> kValueFlags = {
        "--timeout", "--grace", "--observe", "--versions", "--name", "--only"};
    if (!kValueFlags.count(flag)) {
      return UsageError(absl::StrCat("unknown flag ", Q(arg)));
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return UsageError(absl::StrCat(flag, " needs a value"));
      }
      value = args[++i];
    }
    if (flag == "--timeout" || flag == "--grace" || flag == "--observe") {
      absl::Duration* target = flag == "--timeout" ? &o.timeout
                               : flag == "--grace" ? &o.grace
                                                   : &o.observe;
      if (!ParsePositiveDuration(value, target)) {
        return UsageError(absl::StrCat(flag, "=", value,
                                       ": not a positive duration; write "
                                       "e.g. 10s, 500ms, 1m"));
      }
    } else if (flag == "--versions") {
      absl::StatusOr<std::vector<uint32_t>> v = ParseVersionList(value);
      if (!v.ok()) {
        return UsageError(
            absl::StrCat("--versions=", value, ": ", v.status().message()));
      }
      o.versions = *v;
    } else if (flag == "--name") {
      if (value.empty()) return UsageError("--name must not be empty");
      o.name = value;
    } else if (flag == "--only") {
      for (absl::string_view name : absl::StrSplit(value, ',')) {
        name = absl::StripAsciiWhitespace(name);
        if (std::find_if(std::begin(kCheckNames), std::end(kCheckNames),
                         [&](const char* n) { return name == n; }) ==
            std::end(kCheckNames)) {
          return UsageError(absl::StrCat(
              "--only: unknown check ", Q(name), "; the checks are: ",
              absl::StrJoin(std::begin(kCheckNames), std::end(kCheckNames),
                            ", ")));
        }
        o.only.emplace_back(name);
      }
    }
  }
  o.command.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  if (o.command.empty() || o.command[0].empty()) {
    return UsageError(
        "no plugin command given; usage: plugd-conform [FLAGS] -- COMMAND "
        "[ARG...], e.g. plugd-conform -- build/bin/plugd-random");
  }
  return parsed;
}

}  // namespace plugd::conform
