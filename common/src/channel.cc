#include "plugd/common/channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <chrono>
#include <memory>

#include "absl/synchronization/notification.h"

namespace plugd {

void PinCallbackCompletionQueue() {
  static const bool pinned = [] {
    // Never destroyed: its reference on the callback queue lasts until exit.
    auto* channel = new std::shared_ptr<grpc::Channel>(
        grpc::CreateChannel("unix:/nonexistent/plugd-callback-queue-pin",
                            grpc::InsecureChannelCredentials()));
    // The channel takes its reference when it first makes a callback call.
    // This one fails at once: its deadline has passed and nothing listens.
    grpc::GenericStub stub(*channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now());
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1);  // a message, even if empty
    grpc::ByteBuffer response;
    absl::Notification done;
    stub.UnaryCall(&context, "/plugd.internal/Pin", grpc::StubOptions(),
                   &request, &response,
                   [&done](grpc::Status) { done.Notify(); });
    done.WaitForNotification();
    return true;
  }();
  (void)pinned;
}

}  // namespace plugd
