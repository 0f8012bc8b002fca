// Retries of idempotent calls across any number of plugin deaths, for the
// channels of supervised and attached plugins (internal to the host library).
//
// gRPC's own retry policy (the channel's service config, ServiceConfig() in
// host.cc) retries an idempotent call whose plugin died under it, but gRPC
// allows a call at most 5 attempts (a cap of the library, not a setting). A
// plugin killed again and again while a call waits for it (each new instance
// taking the call and dying with it) exhausts those 5 attempts well within
// the call's deadline, and the call fails with UNAVAILABLE "Socket closed"
// (docs/reliability.md, the kills phase of plugd-soak). This interceptor
// makes such a call transparent to the kills: it takes over (hijacks) a
// unary call of an idempotent method and issues it again, through the rest
// of the channel (gRPC's retry policy included, so each round is up to 5
// attempts), until it succeeds, fails with anything but UNAVAILABLE, the
// plugin is deliberately down (the supervisor's tombstone answered: its
// message starts with "plugin NAME is "), the call's deadline (or the
// channel's call_timeout from the call's start, whichever is sooner) passes,
// kMaxRetryRounds rounds failed, or the plugin crashed or hung (CrashCount:
// not when killed from outside) kMaxCrashesPerCall times since the call was
// taken over: the request itself may be what brings it down.
//
//   std::vector<std::unique_ptr<ClientInterceptorFactoryInterface>> f;
//   f.push_back(...status interceptor...);   // sees the final status
//   f.push_back(std::make_unique<IdempotentRetryInterceptorFactory>(
//       "echo", {"/plugd.v1.Control/Describe"}, absl::Seconds(30)));  // last
//   auto channel = grpc::experimental::CreateCustomChannelWithInterceptors(
//       target, creds, args, std::move(f));
//
// Scope and limits:
// - Unary calls, blocking, asynchronous (completion queue) or callback. A
//   blocking call's rounds are blocking calls on the caller's thread, which
//   waits for the call anyway, so each answer is read on that thread as the
//   call's own would have been (told apart by where gRPC keeps the call's
//   operations: on the caller's stack only for a blocking call). Other
//   calls' rounds are callback calls, chained from each one's completion,
//   and the hijacked call completes from the last one's; no thread waits
//   for them (a blocking wait here would hold a thread of gRPC's callback
//   pool or of the caller's completion queue, and deadlock once all are
//   held). An asynchronous call whose caller reads the initial metadata
//   before Finish, and streams, pass through unchanged (gRPC's 5 attempts).
// - Only methods whose request and response are generated protobuf messages
//   (every method in the generated pool; all plugd stubs are).
// - The call's deadline (capped at call_timeout), initial metadata and the
//   channel's service config (waitForReady) carry over to each round; the
//   server's metadata seen by the caller is that of the last round.
//   ClientContext::TryCancel on a hijacked call (from any thread) cancels
//   the round in flight and starts no other: the call ends CANCELLED. A
//   cancellation propagated from a parent server call
//   (ClientContext::FromServerContext) happens inside gRPC's core, which
//   the rounds do not see; nor do they get the parent's deadline.
// - Must be the last interceptor of the channel: the rounds go through the
//   interceptors after it, and the ones before see one call.
// - Taking a call over costs a second call object, about a fifth more
//   instructions on the host side of a 64 B blocking call (95-96k against
//   80k Ir/call: plugd-bench's callgrind scenario, docs/benchmarks.md),
//   and for a non-blocking call a hop through gRPC's callback threads.
//   With a
//   RetryWindow (RetryMode::kWhileUnstable), only calls started while it
//   is open are taken over; the host library opens it for a while each time
//   the plugin exits, so calls to a plugin that has been stable pay nothing
//   (and get gRPC's 5 attempts should it start dying under them).
#ifndef PLUGD_HOSTS_SRC_IDEMPOTENT_RETRY_H_
#define PLUGD_HOSTS_SRC_IDEMPOTENT_RETRY_H_

#include <grpcpp/completion_queue.h>
#include <grpcpp/support/client_interceptor.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "plugd/v1/broker.pb.h"

namespace plugd::host {

// At most this many rounds (each up to gRPC's 5 attempts) per call.
inline constexpr int kMaxRetryRounds = 20;

// How long after a supervised plugin's exit (or failed start, or turning
// unhealthy) its calls are taken over; the plugin's call_timeout if longer.
inline constexpr absl::Duration kRetryWindowAfterExit = absl::Seconds(60);

// When calls are taken over: while open. Thread-safe; IsOpen is one atomic
// load, as it runs at the start of every call.
class RetryWindow {
 public:
  // Opens the window until `span` from now (or leaves it open longer).
  void OpenFor(absl::Duration span);
  // While held, the window is open whatever OpenFor said.
  void SetHeld(bool held) { held_.store(held, std::memory_order_relaxed); }
  bool IsOpen() const;

 private:
  std::atomic<bool> held_{false};
  std::atomic<int64_t> until_ns_{0};  // absl::GetCurrentTimeNanos() units
};

// A call taken over stops once the plugin has crashed this many times since
// the call started: a request that crashes every instance it reaches (a
// "poison" request) would otherwise crash instance after instance until the
// supervisor gave up on the plugin. The crash that reaches the limit cancels
// the round in flight (gRPC's own attempts of it included) as the exit event
// arrives, so no further instance is sent the request unless it was sent
// before the event came.
inline constexpr uint64_t kMaxCrashesPerCall = 2;

// Told of each crash a CrashCount observes, while watching it.
class CrashListener {
 public:
  // `count`: the plugin's crashes so far, this one included. Runs on the
  // thread that observed the crash, under the CrashCount's listener lock
  // (not recursive: OnCrash must not call Watch or Unwatch).
  virtual void OnCrash(uint64_t count) = 0;

 protected:
  ~CrashListener() = default;

 private:
  friend class CrashCount;
  CrashListener* prev_ = nullptr;  // the CrashCount's list, under its lock
  CrashListener* next_ = nullptr;
};

// The crashes of one plugin, as its supervisor's (or the daemon's) exit
// events tell: exits by a signal other than SIGKILL, SIGTERM, SIGINT and
// SIGHUP (kills and stops from outside, which calls ride through), or with
// a non-zero code other than 128 + one of those; and kills by the
// supervisor for not answering health checks (ExitInfo.killed_for
// "liveness") or, having announced its address, the connect check of its
// start ("start_timeout"): hung. Counted for the whole plugin, not per call.
// Thread-safe.
class CrashCount {
 public:
  void Observe(const v1::ExitInfo& exit);
  uint64_t Get() const { return count_.load(std::memory_order_acquire); }
  // The last crash, for people ("killed by signal 6 (SIGABRT)").
  std::string LastText() const;

  // Until Unwatch, `listener` is told of every crash. Unwatch waits for an
  // OnCrash call in progress: once it returns, none runs or will. Const, as
  // watching does not change the count (interceptors hold a const one).
  void Watch(CrashListener* listener) const;
  void Unwatch(CrashListener* listener) const;

 private:
  std::atomic<uint64_t> count_{0};
  mutable std::mutex mu_;
  std::string last_text_;
  mutable std::mutex listeners_mu_;
  mutable CrashListener* listeners_ = nullptr;  // guarded by listeners_mu_
};

// Completion queues for the rounds of blocking calls, reused: creating one
// per call cost ~6 % of a 64 B call's host-side instructions. A call takes
// one for its rounds and gives it back; they are shut down with the pool
// (with the channel). A std::mutex, not an absl::Mutex: Debian's Abseil
// may run its deadlock detector on every lock of the latter.
class CompletionQueuePool {
 public:
  CompletionQueuePool() = default;
  CompletionQueuePool(const CompletionQueuePool&) = delete;
  CompletionQueuePool& operator=(const CompletionQueuePool&) = delete;
  ~CompletionQueuePool();

  std::unique_ptr<grpc::CompletionQueue> Take();
  // `cq` must have no event left to take.
  void Give(std::unique_ptr<grpc::CompletionQueue> cq);

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<grpc::CompletionQueue>> free_;
};

class IdempotentRetryInterceptorFactory
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  // `plugin`: the plugin's name (its tombstone's messages start with
  // "plugin NAME is "). `methods`: the full method paths to retry, as gRPC
  // names them ("/package.Service/Method"); those not in the generated pool
  // are not retried. `call_timeout`: the longest a call may take, all rounds
  // together, when its own deadline is later (PluginOptions::call_timeout;
  // zero: no cap). `window`: take calls over only while it is open (null:
  // always). `crashes`: stop retrying a call once the plugin has crashed
  // kMaxCrashesPerCall times since it was taken over (null: no limit).
  IdempotentRetryInterceptorFactory(
      const std::string& plugin, const std::set<std::string>& methods,
      absl::Duration call_timeout,
      std::shared_ptr<const RetryWindow> window = nullptr,
      std::shared_ptr<const CrashCount> crashes = nullptr);

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override;

 private:
  const std::string tombstone_prefix_;
  const std::string plugin_prefix_;                   // "plugin NAME "
  const std::set<std::string, std::less<>> methods_;  // looked up by char*
  const absl::Duration call_timeout_;
  const std::shared_ptr<const RetryWindow> window_;
  const std::shared_ptr<const CrashCount> crashes_;
  CompletionQueuePool queues_;
};

}  // namespace plugd::host

#endif  // PLUGD_HOSTS_SRC_IDEMPOTENT_RETRY_H_
