// Status helpers shared by every plugd library.
//
// Library APIs return absl::Status / absl::StatusOr<T>; grpc::Status appears
// only at RPC edges and is converted here, in one place. Abseil 20220623 has
// no RETURN_IF_ERROR / ASSIGN_OR_RETURN, so plugd has its own:
//
//   absl::StatusOr<Config> Load(const std::string& path) {
//     PLUGD_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
//     PLUGD_RETURN_IF_ERROR(Validate(text));
//     ...
//   }
#ifndef PLUGD_COMMON_STATUS_H_
#define PLUGD_COMMON_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace plugd {

// Converts between gRPC and Abseil statuses. The canonical codes are
// numerically identical in both libraries.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// Returns `status` with `prefix + ": "` put before its message; OK stays OK.
absl::Status Annotate(const absl::Status& status, absl::string_view prefix);

}  // namespace plugd

#define PLUGD_STATUS_CONCAT_INNER_(a, b) a##b
#define PLUGD_STATUS_CONCAT_(a, b) PLUGD_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define PLUGD_RETURN_IF_ERROR(expr)                \
  do {                                             \
    const ::absl::Status plugd_status_ = (expr);   \
    if (!plugd_status_.ok()) return plugd_status_; \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status from
// the enclosing function, else moves the value into `lhs` (a declaration or
// an lvalue).
#define PLUGD_ASSIGN_OR_RETURN(lhs, rexpr) \
  PLUGD_ASSIGN_OR_RETURN_IMPL_(            \
      PLUGD_STATUS_CONCAT_(plugd_statusor_, __LINE__), lhs, rexpr)
#define PLUGD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();      \
  lhs = std::move(tmp).value()

#endif  // PLUGD_COMMON_STATUS_H_
