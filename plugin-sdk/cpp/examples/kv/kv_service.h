// The kv.v1.KV service of plugd-kv: an in-memory map persisted to one file,
// rewritten atomically (temp file, fsync, rename) on every change.
//
// File format: the line "plugd-kv 1\n", then kv.v1.Entry messages, each
// preceded by its size as a varint (protobuf's delimited format).
#ifndef PLUGD_SDK_EXAMPLES_KV_KV_SERVICE_H_
#define PLUGD_SDK_EXAMPLES_KV_KV_SERVICE_H_

#include <functional>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "kv/v1/kv.grpc.pb.h"

namespace plugd::examples {

// The go-plugin handshake of the KV example application: a go-plugin host
// whose plugin.HandshakeConfig has this MagicCookieKey and MagicCookieValue
// (and ProtocolVersion 1) can load plugd-kv (docs/go-plugin.md).
inline constexpr char kKvGoPluginCookieKey[] = "KV_PLUGIN";
inline constexpr char kKvGoPluginCookieValue[] = "plugd-kv-example-1";

class KvService final : public kv::v1::KV::Service {
 public:
  // `data_path` is the file the data lives in. `stopping` says when the
  // plugin is shutting down, so that Scan can end early.
  KvService(std::string data_path, std::function<bool()> stopping);

  // Reads the data file. A missing file is an empty store; an unreadable or
  // corrupt one is an error that names the file.
  absl::Status Load();

  grpc::Status Get(grpc::ServerContext* context,
                   const kv::v1::GetRequest* request,
                   kv::v1::GetResponse* response) override;
  grpc::Status Put(grpc::ServerContext* context,
                   const kv::v1::PutRequest* request,
                   kv::v1::PutResponse* response) override;
  grpc::Status Delete(grpc::ServerContext* context,
                      const kv::v1::DeleteRequest* request,
                      kv::v1::DeleteResponse* response) override;
  grpc::Status List(grpc::ServerContext* context,
                    const kv::v1::ListRequest* request,
                    kv::v1::ListResponse* response) override;
  grpc::Status Scan(grpc::ServerContext* context,
                    const kv::v1::ScanRequest* request,
                    grpc::ServerWriter<kv::v1::Entry>* writer) override;

 private:
  absl::Status SaveLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const std::function<bool()> stopping_;
  absl::Mutex mu_;
  std::map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
};

}  // namespace plugd::examples

#endif  // PLUGD_SDK_EXAMPLES_KV_KV_SERVICE_H_
