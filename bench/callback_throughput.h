// Keeps `inflight` callback-API echo.v1.Echo calls outstanding on `stub`
// until `calls` have completed: the throughput loop of plugd-bench's
// scenarios 2 and 3 and of plugd-perf --client callback.
//
//   std::string error;
//   double rate = plugd::bench::CallbackThroughput(stub.get(), request, 8,
//                                                  20000, &error);
//
// Calls per second, or 0 with *error set when any call failed (the loop
// still waits for every outstanding call before returning). Each call has a
// 30 s deadline; the whole run a 300 s hang guard.
#ifndef PLUGD_BENCH_CALLBACK_THROUGHPUT_H_
#define PLUGD_BENCH_CALLBACK_THROUGHPUT_H_

#include <grpcpp/client_context.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "echo/v1/echo.grpc.pb.h"

namespace plugd::bench {

inline double CallbackThroughput(echo::v1::Echo::Stub* stub,
                                 const echo::v1::EchoRequest& request,
                                 int inflight, int calls, std::string* error) {
  struct Slot {
    std::unique_ptr<grpc::ClientContext> context;
    echo::v1::EchoResponse response;
  };
  std::vector<Slot> slots(static_cast<size_t>(inflight));
  std::atomic<int> started{0};
  std::atomic<int> completed{0};
  std::atomic<int> failed{0};
  absl::Notification done;
  std::function<void(Slot*)> issue = [&](Slot* slot) {
    slot->context = std::make_unique<grpc::ClientContext>();
    slot->context->set_deadline(
        absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    stub->async()->Echo(slot->context.get(), &request, &slot->response,
                        [&, slot](const grpc::Status& status) {
                          if (!status.ok()) failed.fetch_add(1);
                          if (started.fetch_add(1) < calls) issue(slot);
                          if (completed.fetch_add(1) + 1 == calls) {
                            done.Notify();
                          }
                        });
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (Slot& slot : slots) {
    if (started.fetch_add(1) < calls) issue(&slot);
  }
  done.WaitForNotificationWithTimeout(absl::Seconds(300));
  const auto t1 = std::chrono::steady_clock::now();
  if (!done.HasBeenNotified() || failed.load() > 0) {
    *error = absl::StrCat(failed.load(), " calls failed");
    // Let the outstanding callbacks finish before the slots go away.
    done.WaitForNotification();
    return 0;
  }
  return calls / std::chrono::duration<double>(t1 - t0).count();
}

}  // namespace plugd::bench

#endif  // PLUGD_BENCH_CALLBACK_THROUGHPUT_H_
