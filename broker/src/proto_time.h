// absl::Time -> google.protobuf.Timestamp, for the supervisor's events and
// the admin API's log lines. Internal to the broker.
#ifndef PLUGD_BROKER_SRC_PROTO_TIME_H_
#define PLUGD_BROKER_SRC_PROTO_TIME_H_

#include <google/protobuf/timestamp.pb.h>

#include "absl/time/time.h"

namespace plugd::broker::internal {

inline google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t nanos = absl::ToUnixNanos(t);
  ts.set_seconds(nanos / 1000000000);
  ts.set_nanos(static_cast<int32_t>(nanos % 1000000000));
  return ts;
}

}  // namespace plugd::broker::internal

#endif  // PLUGD_BROKER_SRC_PROTO_TIME_H_
