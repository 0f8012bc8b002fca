#include "plugd/common/json.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/type_resolver.h>
#include <google/protobuf/util/type_resolver_util.h>

#include <memory>

#include "absl/strings/str_cat.h"

namespace plugd {

absl::StatusOr<std::string> MessageToJson(
    const google::protobuf::Message& message,
    const google::protobuf::util::JsonPrintOptions& options) {
  // What MessageToJsonString does, with deterministic serialization in
  // between: it sorts map entries by key.
  constexpr char kUrlPrefix[] = "type.googleapis.com";
  const google::protobuf::DescriptorPool* pool =
      message.GetDescriptor()->file()->pool();
  // The compiled-in types' resolver is made once, as protobuf does; it
  // holds no state but the pool.
  static google::protobuf::util::TypeResolver* const generated =
      google::protobuf::util::NewTypeResolverForDescriptorPool(
          kUrlPrefix, google::protobuf::DescriptorPool::generated_pool());
  std::unique_ptr<google::protobuf::util::TypeResolver> own;
  google::protobuf::util::TypeResolver* resolver = generated;
  if (pool != google::protobuf::DescriptorPool::generated_pool()) {
    own.reset(google::protobuf::util::NewTypeResolverForDescriptorPool(
        kUrlPrefix, pool));
    resolver = own.get();
  }
  std::string binary;
  {
    google::protobuf::io::StringOutputStream stream(&binary);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    if (!message.SerializeToCodedStream(&coded)) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot serialize ", message.GetTypeName(),
                       " (a required field is missing)"));
    }
  }
  std::string out;
  auto status = google::protobuf::util::BinaryToJsonString(
      resolver,
      absl::StrCat(kUrlPrefix, "/", message.GetDescriptor()->full_name()),
      binary, &out, options);
  if (!status.ok()) {
    auto why = status.message();  // protobuf's own StringPiece
    return absl::InvalidArgumentError(
        absl::StrCat("cannot render ", message.GetTypeName(),
                     " as JSON: ", absl::string_view(why.data(), why.size())));
  }
  return out;
}

}  // namespace plugd
