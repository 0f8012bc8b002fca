#include "kv_service.h"

#include <errno.h>
#include <fcntl.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/delimited_message_util.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "plugd/common/status.h"

namespace plugd::examples {
namespace {

constexpr absl::string_view kMagic = "plugd-kv 1\n";

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

grpc::Status KeyRequired(absl::string_view method) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat(method, ": the key must not be empty"));
}

}  // namespace

KvService::KvService(std::string data_path, std::function<bool()> stopping)
    : path_(std::move(data_path)), stopping_(std::move(stopping)) {}

absl::Status KvService::Load() {
  const int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoError("cannot open the data file", path_);
  }
  std::string contents;
  char buffer[64 * 1024];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status error = ErrnoError("cannot read the data file", path_);
      close(fd);
      return error;
    }
    if (n == 0) break;
    contents.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  auto corrupt = [this](absl::string_view why) {
    return absl::DataLossError(
        absl::StrCat("the data file ", path_, " is corrupt (", why,
                     "); move it away to start with an empty store"));
  };
  if (contents.empty()) return absl::OkStatus();
  if (!absl::StartsWith(contents, kMagic)) {
    return corrupt("it does not start with \"plugd-kv 1\"");
  }
  google::protobuf::io::ArrayInputStream stream(
      contents.data() + kMagic.size(),
      static_cast<int>(contents.size() - kMagic.size()));
  std::map<std::string, std::string> data;
  while (true) {
    kv::v1::Entry entry;
    bool clean_eof = false;
    if (!google::protobuf::util::ParseDelimitedFromZeroCopyStream(
            &entry, &stream, &clean_eof)) {
      if (clean_eof) break;
      return corrupt(absl::StrCat("entry ", data.size() + 1, " is unreadable"));
    }
    data[entry.key()] = entry.value();
  }
  absl::MutexLock lock(&mu_);
  data_ = std::move(data);
  return absl::OkStatus();
}

absl::Status KvService::SaveLocked() {
  std::string contents(kMagic);
  {
    google::protobuf::io::StringOutputStream stream(&contents);
    for (const auto& [key, value] : data_) {
      kv::v1::Entry entry;
      entry.set_key(key);
      entry.set_value(value);
      if (!google::protobuf::util::SerializeDelimitedToZeroCopyStream(
              entry, &stream)) {
        return absl::InternalError("cannot encode an entry");
      }
    }
  }
  const std::string temp = absl::StrCat(path_, ".tmp");
  const int fd =
      open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("cannot create", temp);
  absl::Status status = WriteAll(fd, contents, temp);
  if (status.ok() && fsync(fd) != 0) status = ErrnoError("cannot sync", temp);
  if (close(fd) != 0 && status.ok()) status = ErrnoError("cannot close", temp);
  if (status.ok() && rename(temp.c_str(), path_.c_str()) != 0) {
    status = ErrnoError("cannot rename to", path_);
  }
  if (!status.ok()) {
    unlink(temp.c_str());
    return status;
  }
  // Make the rename itself durable.
  const int dir =
      open(DirName(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    fsync(dir);
    close(dir);
  }
  return absl::OkStatus();
}

grpc::Status KvService::Get(grpc::ServerContext* context,
                            const kv::v1::GetRequest* request,
                            kv::v1::GetResponse* response) {
  if (request->key().empty()) return KeyRequired("Get");
  absl::MutexLock lock(&mu_);
  auto it = data_.find(request->key());
  if (it == data_.end()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no key \"", request->key(), "\""));
  }
  response->set_value(it->second);
  return grpc::Status::OK;
}

grpc::Status KvService::Put(grpc::ServerContext* context,
                            const kv::v1::PutRequest* request,
                            kv::v1::PutResponse* response) {
  if (request->key().empty()) return KeyRequired("Put");
  absl::MutexLock lock(&mu_);
  std::optional<std::string> old;
  if (auto it = data_.find(request->key()); it != data_.end()) {
    old = it->second;
  }
  data_[request->key()] = request->value();
  absl::Status saved = SaveLocked();
  if (!saved.ok()) {
    if (old) {
      data_[request->key()] = *std::move(old);
    } else {
      data_.erase(request->key());
    }
    return plugd::ToGrpcStatus(plugd::Annotate(saved, "Put"));
  }
  return grpc::Status::OK;
}

grpc::Status KvService::Delete(grpc::ServerContext* context,
                               const kv::v1::DeleteRequest* request,
                               kv::v1::DeleteResponse* response) {
  if (request->key().empty()) return KeyRequired("Delete");
  absl::MutexLock lock(&mu_);
  auto it = data_.find(request->key());
  if (it == data_.end()) {
    response->set_existed(false);
    return grpc::Status::OK;
  }
  std::string old = std::move(it->second);
  data_.erase(it);
  absl::Status saved = SaveLocked();
  if (!saved.ok()) {
    data_[request->key()] = std::move(old);
    return plugd::ToGrpcStatus(plugd::Annotate(saved, "Delete"));
  }
  response->set_existed(true);
  return grpc::Status::OK;
}

grpc::Status KvService::List(grpc::ServerContext* context,
                             const kv::v1::ListRequest* request,
                             kv::v1::ListResponse* response) {
  absl::MutexLock lock(&mu_);
  for (auto it = data_.lower_bound(request->prefix());
       it != data_.end() && absl::StartsWith(it->first, request->prefix());
       ++it) {
    response->add_keys(it->first);
  }
  return grpc::Status::OK;
}

grpc::Status KvService::Scan(grpc::ServerContext* context,
                             const kv::v1::ScanRequest* request,
                             grpc::ServerWriter<kv::v1::Entry>* writer) {
  // Stream a snapshot, so that slow readers do not hold the lock.
  std::vector<kv::v1::Entry> entries;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = data_.lower_bound(request->prefix());
         it != data_.end() && absl::StartsWith(it->first, request->prefix());
         ++it) {
      kv::v1::Entry& entry = entries.emplace_back();
      entry.set_key(it->first);
      entry.set_value(it->second);
    }
  }
  for (const kv::v1::Entry& entry : entries) {
    if (stopping_()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "Scan: the plugin is shutting down");
    }
    if (context->IsCancelled() || !writer->Write(entry)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "Scan: cancelled");
    }
  }
  return grpc::Status::OK;
}

}  // namespace plugd::examples
