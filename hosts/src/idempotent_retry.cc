#include "idempotent_retry.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message_lite.h>
#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/byte_buffer.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace plugd::host {
namespace {

using grpc::experimental::ClientRpcInfo;
using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::Interceptor;
using grpc::experimental::InterceptorBatchMethods;

// "/pkg.Service/Method" names a method of a generated protobuf service.
bool IsGeneratedMethod(absl::string_view path) {
  absl::ConsumePrefix(&path, "/");
  const size_t slash = path.find('/');
  if (slash == absl::string_view::npos) return false;
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          std::string(path.substr(0, slash)));
  return service != nullptr &&
         service->FindMethodByName(std::string(path.substr(slash + 1))) !=
             nullptr;
}

// Whether `p` points into a frame of the calling thread's stack that is
// still live above the current one (an ancestor's). The bounds are read
// once per thread (pthread_getattr_np reads /proc/self/maps for the main
// thread, whose reported range may reach down into the heap when the stack
// size is unlimited: only addresses above the current frame count). A
// thread running on a stack of its own making (a fiber) gets false.
bool InAnAncestorsFrame(const void* p) {
  struct Bounds {
    uintptr_t low = 0;
    uintptr_t high = 0;
  };
  thread_local const Bounds bounds = [] {
    Bounds b;
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) return b;
    void* low = nullptr;
    size_t size = 0;
    if (pthread_attr_getstack(&attr, &low, &size) == 0) {
      b.low = reinterpret_cast<uintptr_t>(low);
      b.high = b.low + size;
    }
    pthread_attr_destroy(&attr);
    return b;
  }();
  const auto here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  const auto a = reinterpret_cast<uintptr_t>(p);
  return here >= bounds.low && here < bounds.high && a > here &&
         a < bounds.high;
}

// Whether the hijacked call is a blocking one, made by the thread running
// the interceptor, which waits for it. gRPC's blocking unary call keeps its
// operations (of which `methods` is a part) and the status it fills in its
// own stack frame (grpc::internal::BlockingUnaryCallImpl), an ancestor of
// this one; asynchronous and callback calls allocate their operations in
// the call's arena (a callback call its status too; an asynchronous one's
// status is the caller's and may well be on its stack).
bool IsBlockingCall(InterceptorBatchMethods* methods) {
  return InAnAncestorsFrame(methods) &&
         InAnAncestorsFrame(methods->GetRecvStatus());
}

// The generated methods of `methods`, in a set looked up by const char*.
std::set<std::string, std::less<>> GeneratedOnly(
    const std::set<std::string>& methods) {
  std::set<std::string, std::less<>> out;
  for (const std::string& method : methods) {
    if (IsGeneratedMethod(method)) out.insert(method);
  }
  return out;
}

// One per hijackable call (a unary call of a listed method); see the header.
class IdempotentRetryInterceptor : public Interceptor, public CrashListener {
 public:
  // `method`: the call's method path, kept by the factory (the rounds' calls
  // keep a pointer to the string they are given).
  IdempotentRetryInterceptor(ClientRpcInfo* info, const std::string* method,
                             absl::Duration call_timeout,
                             const std::string* tombstone_prefix,
                             const std::string* plugin_prefix,
                             const CrashCount* crashes,
                             CompletionQueuePool* queues)
      : info_(info),
        method_(method),
        tombstone_prefix_(tombstone_prefix),
        plugin_prefix_(plugin_prefix),
        crashes_(crashes),
        call_timeout_(call_timeout),
        queues_(queues) {}

  ~IdempotentRetryInterceptor() override { StopWatching(); }

  // A crash of the plugin while the call is taken over: at the limit, the
  // round in flight is cancelled, and no other starts (the count is already
  // up when this runs: NewRoundContext and AnotherRound read it).
  void OnCrash(uint64_t count) override {
    // (Not a subtraction: a crash counted before the call started may be
    // reported to it just after.)
    if (count < crashes_at_start_ + kMaxCrashesPerCall) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (context_ != nullptr) context_->TryCancel();
  }

  void Intercept(InterceptorBatchMethods* methods) override {
    // ClientContext::TryCancel, from any thread: the round in flight is
    // cancelled and no other starts (the call ends CANCELLED).
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_CANCEL)) {
      Cancel();
      return;  // Proceed is a no-op for a cancellation
    }
    if (!hijacked_) {
      // A unary call, blocking, asynchronous or callback, has one batch with
      // the request and the status (an asynchronous one whose caller reads
      // the initial metadata first receives its status later: not hijacked).
      if (methods->QueryInterceptionHookPoint(
              InterceptionHookPoints::PRE_SEND_INITIAL_METADATA) &&
          methods->QueryInterceptionHookPoint(
              InterceptionHookPoints::PRE_SEND_MESSAGE) &&
          methods->GetRecvStatus() != nullptr &&
          methods->GetRecvMessage() != nullptr) {
        hijacked_ = true;
        if (crashes_ != nullptr) {
          crashes_at_start_ = crashes_->Get();
          crashes_->Watch(this);
          watching_ = true;
        }
        request_ = *methods->GetSerializedSendMessage();
        metadata_ = *methods->GetSendInitialMetadata();
        methods->Hijack();  // calls Intercept again with the receive ops
        return;
      }
      methods->Proceed();
      return;
    }
    // The hijacked receive ops. A blocking call's rounds run here, on the
    // caller's thread, which waits for the call anyway: each round reads its
    // answer on this thread, as the call itself would have. Other calls' are
    // answered (and Proceed called) when the last round ends, from the
    // thread that completes it; nothing blocks here.
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_RECV_STATUS)) {
      recv_methods_ = methods;
      stub_ = std::make_unique<grpc::GenericStub>(
          std::shared_ptr<grpc::ChannelInterface>(
              methods->GetInterceptedChannel()));
      deadline_ = info_->client_context()->deadline();
      if (call_timeout_ > absl::ZeroDuration()) {
        deadline_ = std::min(deadline_,
                             absl::ToChronoTime(absl::Now() + call_timeout_));
      }
      if (IsBlockingCall(methods)) {
        RunBlockingRounds();
      } else {
        StartRound();
      }
      return;
    }
    methods->Proceed();
  }

 private:
  using MetadataMap = std::multimap<grpc::string_ref, grpc::string_ref>;

  // The round's context outlives the call, so the references stay valid.
  static void Copy(const MetadataMap& from, MetadataMap* to) {
    if (to == nullptr) return;
    to->insert(from.begin(), from.end());
  }

  // The context of the next round: the call's deadline and metadata. False
  // (status_ the call's outcome) once the call has been cancelled or the
  // plugin has crashed too often under it.
  bool NewRoundContext() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(deadline_);
    for (const auto& [key, value] : metadata_) {
      context->AddMetadata(key, value);
    }
    bool limit_reached = false;
    {
      // Under mu_, so that a crash counted after this reaches the new
      // context through OnCrash.
      std::lock_guard<std::mutex> lock(mu_);
      if (cancelled_) {
        status_ = grpc::Status(grpc::StatusCode::CANCELLED, "Cancelled");
        return false;
      }
      limit_reached = CrashLimitReached();
      if (!limit_reached) {
        std::swap(context_, context);  // the last round's goes with `context`
      }
    }
    if (limit_reached) {
      CrashedTooOften();  // sets status_
      return false;
    }
    ++round_;
    response_.Clear();
    return true;
  }

  // After a round: whether another should start. Otherwise status_ is the
  // call's outcome.
  bool AnotherRound() {
    bool cancelled = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled = cancelled_;
    }
    if (cancelled) {
      // The caller's cancellation wins over a crash: CANCELLED, unless the
      // round had its answer (or a final error) first.
      if (ShouldRetry()) {
        status_ = grpc::Status(grpc::StatusCode::CANCELLED, "Cancelled");
      }
      return false;
    }
    // A round that failed as the plugin died, or that OnCrash cancelled
    // (not one that got its answer before the cancellation did).
    const bool failed = ShouldRetry();
    if ((failed || status_.error_code() == grpc::StatusCode::CANCELLED) &&
        CrashedTooOften()) {
      return false;
    }
    return failed;
  }

  bool CrashLimitReached() const {
    return crashes_ != nullptr &&
           crashes_->Get() >= crashes_at_start_ + kMaxCrashesPerCall;
  }

  void StopWatching() {
    if (!watching_) return;
    crashes_->Unwatch(this);
    watching_ = false;
  }

  void Cancel() {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    // A round not yet started is cancelled as it starts.
    if (context_ != nullptr) context_->TryCancel();
  }

  // The rounds of a blocking call, one after the other on this thread,
  // through a completion queue (of the channel's pool) that this thread
  // polls, as a blocking call's own queue is.
  void RunBlockingRounds() {
    std::unique_ptr<grpc::CompletionQueue> cq = queues_->Take();
    while (NewRoundContext()) {
      std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
          stub_->PrepareUnaryCall(context_.get(), *method_, request_, cq.get());
      call->StartCall();
      call->Finish(&response_, &status_, this);
      void* tag = nullptr;
      bool ok = false;
      cq->Next(&tag, &ok);  // the round's one event: Finish's
      if (!AnotherRound()) break;
    }
    queues_->Give(std::move(cq));
    Answer();
  }

  // One round: the call again, through the rest of the channel. Its
  // completion starts the next round or answers the hijacked receive ops.
  void StartRound() {
    if (!NewRoundContext()) {
      Answer();
      return;
    }
    stub_->UnaryCall(context_.get(), *method_, grpc::StubOptions(), &request_,
                     &response_, [this](grpc::Status s) {
                       status_ = std::move(s);
                       if (AnotherRound()) {
                         StartRound();
                       } else {
                         Answer();
                       }
                     });
  }

  // Whether the round failed as a dying plugin's call fails, and the call
  // may go on.
  bool ShouldRetry() const {
    return status_.error_code() == grpc::StatusCode::UNAVAILABLE &&
           !absl::StartsWith(status_.error_message(), *tombstone_prefix_) &&
           round_ < kMaxRetryRounds &&
           std::chrono::system_clock::now() < deadline_;
  }

  // Whether the plugin has crashed or hung (CrashCount) kMaxCrashesPerCall
  // times since the call was taken over; then the call ends UNAVAILABLE
  // with a status that says so (starting "plugin NAME ", so the status
  // interceptor keeps it), as the request may be what crashes it.
  bool CrashedTooOften() {
    if (!CrashLimitReached()) return false;
    const uint64_t crashed = crashes_->Get() - crashes_at_start_;
    std::string last_attempt;
    if (status_.error_code() == grpc::StatusCode::CANCELLED) {
      last_attempt = "; the attempt in flight was cancelled";
    } else if (!status_.ok()) {
      last_attempt =
          absl::StrCat("; the last attempt: ", status_.error_message());
    }
    status_ = grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        absl::StrCat(*plugin_prefix_, "crashed or hung ", crashed,
                     " times since this call of ", info_->method(),
                     " started (the last: ", crashes_->LastText(),
                     "); not retried again, as the request may be what "
                     "crashes it",
                     last_attempt));
    return true;
  }

  // Fills the hijacked receive ops with the last round's outcome (none if
  // the call was cancelled before its first round).
  void Answer() {
    StopWatching();  // before Proceed, after which this may be gone
    InterceptorBatchMethods* methods = recv_methods_;
    if (context_ != nullptr &&
        methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_RECV_INITIAL_METADATA)) {
      Copy(context_->GetServerInitialMetadata(),
           methods->GetRecvInitialMetadata());
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_RECV_MESSAGE)) {
      if (status_.ok()) {
        // The stub's response object: a generated protobuf message (only
        // generated methods are hijacked), whose MessageLite base is at its
        // start.
        auto* message = static_cast<google::protobuf::MessageLite*>(
            methods->GetRecvMessage());
        grpc::Status parsed = grpc::SerializationTraits<
            google::protobuf::MessageLite>::Deserialize(&response_, message);
        if (!parsed.ok()) {
          status_ = grpc::Status(
              grpc::StatusCode::INTERNAL,
              absl::StrCat("cannot parse the response of ", info_->method(),
                           ": ", parsed.error_message()));
        }
      }
      if (!status_.ok()) methods->FailHijackedRecvMessage();
    }
    if (context_ != nullptr) {
      Copy(context_->GetServerTrailingMetadata(),
           methods->GetRecvTrailingMetadata());
    }
    *methods->GetRecvStatus() = status_;
    methods->Proceed();  // the call completes; this object may be gone after
  }

  ClientRpcInfo* const info_;
  const std::string* const method_;
  const std::string* const tombstone_prefix_;
  const std::string* const plugin_prefix_;
  const CrashCount* const crashes_;
  uint64_t crashes_at_start_ = 0;
  bool watching_ = false;  // crashes_->Watch(this) in force
  const absl::Duration call_timeout_;
  CompletionQueuePool* const queues_;
  bool hijacked_ = false;
  grpc::ByteBuffer request_;
  std::multimap<std::string, std::string> metadata_;
  InterceptorBatchMethods* recv_methods_ = nullptr;  // the hijacked ops
  // The rest of the channel (the interceptors after this one).
  std::unique_ptr<grpc::GenericStub> stub_;
  std::chrono::system_clock::time_point deadline_;
  int round_ = 0;
  // Guards context_'s replacement and cancelled_ against Cancel and
  // OnCrash, which run on the thread of whoever cancels the call and on the
  // one that observes the crash. Taken under the CrashCount's listener lock
  // (OnCrash), never the other way round.
  std::mutex mu_;
  bool cancelled_ = false;
  std::unique_ptr<grpc::ClientContext> context_;  // the last round's
  grpc::ByteBuffer response_;
  grpc::Status status_;
};

}  // namespace

CompletionQueuePool::~CompletionQueuePool() {
  for (const std::unique_ptr<grpc::CompletionQueue>& cq : free_) {
    cq->Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq->Next(&tag, &ok)) {
    }
  }
}

std::unique_ptr<grpc::CompletionQueue> CompletionQueuePool::Take() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      std::unique_ptr<grpc::CompletionQueue> cq = std::move(free_.back());
      free_.pop_back();
      return cq;
    }
  }
  return std::make_unique<grpc::CompletionQueue>();
}

void CompletionQueuePool::Give(std::unique_ptr<grpc::CompletionQueue> cq) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(std::move(cq));
}

void CrashCount::Observe(const v1::ExitInfo& exit) {
  // A kill or stop from outside, also as a shell or runtime reports one
  // (exit code 128 + the signal).
  auto is_kill = [](int signal) {
    return signal == SIGKILL || signal == SIGTERM || signal == SIGINT ||
           signal == SIGHUP;
  };
  // Killed by its supervisor for not answering health checks (or, once it
  // had announced its address, the connect check of its start): hung, which
  // a request may cause as well as a crash.
  const bool hung =
      exit.killed_for() == "liveness" || exit.killed_for() == "start_timeout";
  const bool crashed =
      hung || (exit.signaled()
                   ? !is_kill(exit.signal())
                   : exit.code() != 0 &&
                         !(exit.code() > 128 && is_kill(exit.code() - 128)));
  if (!crashed) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_text_ = hung ? absl::StrCat(exit.text(),
                                     " as it answered no health check: hung")
                      : exit.text();
  }
  const uint64_t count = count_.fetch_add(1, std::memory_order_acq_rel) + 1;
  std::lock_guard<std::mutex> lock(listeners_mu_);
  for (CrashListener* l = listeners_; l != nullptr; l = l->next_) {
    l->OnCrash(count);
  }
}

void CrashCount::Watch(CrashListener* listener) const {
  std::lock_guard<std::mutex> lock(listeners_mu_);
  listener->prev_ = nullptr;
  listener->next_ = listeners_;
  if (listeners_ != nullptr) listeners_->prev_ = listener;
  listeners_ = listener;
}

void CrashCount::Unwatch(CrashListener* listener) const {
  std::lock_guard<std::mutex> lock(listeners_mu_);
  if (listener->prev_ != nullptr) {
    listener->prev_->next_ = listener->next_;
  } else {
    listeners_ = listener->next_;
  }
  if (listener->next_ != nullptr) listener->next_->prev_ = listener->prev_;
  listener->prev_ = listener->next_ = nullptr;
}

std::string CrashCount::LastText() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_text_;
}

void RetryWindow::OpenFor(absl::Duration span) {
  const int64_t until =
      absl::GetCurrentTimeNanos() + absl::ToInt64Nanoseconds(span);
  int64_t current = until_ns_.load(std::memory_order_relaxed);
  while (current < until && !until_ns_.compare_exchange_weak(
                                current, until, std::memory_order_relaxed)) {
  }
}

bool RetryWindow::IsOpen() const {
  return held_.load(std::memory_order_relaxed) ||
         absl::GetCurrentTimeNanos() <
             until_ns_.load(std::memory_order_relaxed);
}

IdempotentRetryInterceptorFactory::IdempotentRetryInterceptorFactory(
    const std::string& plugin, const std::set<std::string>& methods,
    absl::Duration call_timeout, std::shared_ptr<const RetryWindow> window,
    std::shared_ptr<const CrashCount> crashes)
    : tombstone_prefix_(absl::StrCat("plugin ", plugin, " is ")),
      plugin_prefix_(absl::StrCat("plugin ", plugin, " ")),
      methods_(GeneratedOnly(methods)),
      call_timeout_(call_timeout),
      window_(std::move(window)),
      crashes_(std::move(crashes)) {}

Interceptor* IdempotentRetryInterceptorFactory::CreateClientInterceptor(
    ClientRpcInfo* info) {
  if (info->type() != ClientRpcInfo::Type::UNARY ||
      (window_ != nullptr && !window_->IsOpen())) {
    return nullptr;  // not hijacked: no interceptor at all for this call
  }
  const auto method = methods_.find(info->method());  // no string built
  if (method == methods_.end()) return nullptr;
  return new IdempotentRetryInterceptor(info, &*method, call_timeout_,
                                        &tombstone_prefix_, &plugin_prefix_,
                                        crashes_.get(), &queues_);
}

}  // namespace plugd::host
