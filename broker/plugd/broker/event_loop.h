// The broker core's event loop: one Asio io_context run by one long-lived
// thread. That thread owns every child process, pipe and timer; other threads
// (gRPC handlers, host API callers) post work to it.
//
//   plugd::broker::EventLoop loop;          // starts the thread
//   loop.Post([] { ... on the loop ... });
//   int n = loop.Run([] { return 42; });   // runs there, waits for the result
#ifndef PLUGD_BROKER_EVENT_LOOP_H_
#define PLUGD_BROKER_EVENT_LOOP_H_

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstddef>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <type_traits>

#include "absl/types/span.h"

namespace plugd::broker {

class EventLoop {
 public:
  // Starts the loop thread.
  EventLoop();
  // Stops the loop and joins its thread. Work still queued is dropped.
  ~EventLoop();

  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  boost::asio::io_context& context() { return context_; }

  // A scratch buffer for reads made on the loop thread (the launcher reads
  // every plugin's output pipes into it): one per loop, instead of one per
  // pipe held while the pipe is idle. Loop thread only; what is read into it
  // must be used before the handler returns.
  absl::Span<char> ReadBuffer() {
    if (read_buffer_ == nullptr) {
      read_buffer_ = std::make_unique<char[]>(kReadBufferBytes);
    }
    return absl::Span<char>(read_buffer_.get(), kReadBufferBytes);
  }

  // True when called on the loop thread.
  bool InLoopThread() const {
    return std::this_thread::get_id() == thread_.get_id();
  }

  // Queues `fn` to run on the loop thread. Never runs it inline.
  void Post(std::function<void()> fn) {
    boost::asio::post(context_, std::move(fn));
  }

  // Runs `fn` on the loop thread and returns its result; runs it inline when
  // already on the loop thread. Blocks the caller until it has run.
  template <typename F>
  auto Run(F fn) -> std::invoke_result_t<F> {
    using R = std::invoke_result_t<F>;
    if (InLoopThread()) return fn();
    std::packaged_task<R()> task(std::move(fn));
    std::future<R> result = task.get_future();
    boost::asio::post(context_, [&task] { task(); });
    return result.get();
  }

 private:
  static constexpr size_t kReadBufferBytes = size_t{64} * 1024;

  boost::asio::io_context context_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type>
      work_;
  std::unique_ptr<char[]> read_buffer_;  // ReadBuffer(), loop thread only
  std::thread thread_;
};

}  // namespace plugd::broker

#endif  // PLUGD_BROKER_EVENT_LOOP_H_
