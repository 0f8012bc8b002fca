#include "plugd/broker/event_loop.h"

#include <exception>

#include "plugd/common/log.h"

namespace plugd::broker {

EventLoop::EventLoop()
    : work_(boost::asio::make_work_guard(context_)), thread_([this] {
        // A handler that throws must not take the loop (and with it every
        // child's parent-death signal) down: log it and keep running.
        for (;;) {
          try {
            context_.run();
            return;
          } catch (const std::exception& e) {
            PLUGD_LOG(ERROR) << "event loop: a handler threw: " << e.what();
          } catch (...) {
            PLUGD_LOG(ERROR) << "event loop: a handler threw a non-exception";
          }
        }
      }) {}

EventLoop::~EventLoop() {
  work_.reset();
  context_.stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace plugd::broker
