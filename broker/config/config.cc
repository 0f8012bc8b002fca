// The config loader: YAML text -> plugd.v1.BrokerConfig.
//
// Three passes over one parsed document:
//   1. Walk: the YAML tree against BrokerConfig's descriptors. Every key is a
//      field name; types, ranges, enum spellings, durations, unknown and
//      duplicate keys are checked here. Generic: nothing below names a field
//      of config.proto. Records where each key path was written
//      ("plugins[0].backoff.initial" -> line 9, column 16) for later messages.
//   2. Validate: the rules that are about meaning (plugin names, commands,
//      the admin address, ...), per field, before defaults hide what was left
//      out. Resolves relative paths.
//   3. Defaults (ApplyDefaults), then the checks that need them (backoff
//      initial <= max, socket path length).
//
// No exception leaves ParseConfig: yaml-cpp throws on syntax errors, and the
// walk never follows an alias cycle further than kMaxDepth.
#include "plugd/broker/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/message.h"
#include "plugd/common/exec_policy.h"
#include "plugd/common/log.h"
#include "plugd/common/protocol.h"
#include "plugd/common/status.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace plugd::broker {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::EnumDescriptor;
using ::google::protobuf::EnumValueDescriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::Reflection;

// Nesting deeper than this is refused (config.proto nests 3 levels; YAML
// aliases can make cycles).
constexpr int kMaxDepth = 16;
// Config files larger than this are refused unread.
constexpr int64_t kMaxFileBytes = 16 << 20;
// sun_path holds 108 bytes including the terminating NUL.
constexpr size_t kMaxSocketPathBytes = 107;
constexpr size_t kMaxPluginNameBytes = 64;
// google.protobuf.Duration's range: +-10000 years.
constexpr int64_t kMaxDurationSeconds = 315576000000;

// A position in the file, 1-based; 0 = unknown.
struct Location {
  int line = 0;
  int column = 0;
};

Location LocationOf(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null() || mark.line < 0) return {};
  return {mark.line + 1, mark.column + 1};
}

// yaml-cpp places a missing value ("key:" then a newline) on the next line:
// point at the key instead.
Location ValueLocation(const YAML::Node& value, Location key) {
  if (value.IsNull()) return key;
  const Location location = LocationOf(value);
  return location.line == 0 ? key : location;
}

// "\"five\"", cut to a readable length.
std::string Quote(absl::string_view text) {
  constexpr size_t kMax = 60;
  if (text.size() <= kMax)
    return absl::StrCat("\"", absl::CHexEscape(text), "\"");
  return absl::StrCat("\"", absl::CHexEscape(text.substr(0, kMax)), "...\"");
}

// What a node is, for "got ..." in messages.
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return Quote(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Null:
      return "nothing";
    default:
      return "an undefined value";
  }
}

std::string ChildPath(const std::string& path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

std::string IndexPath(const std::string& path, size_t index) {
  return absl::StrCat(path, "[", index, "]");
}

bool IsDuration(const Descriptor* descriptor) {
  return descriptor->full_name() == "google.protobuf.Duration";
}

bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t extra;
    uint32_t code_point;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      code_point = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      code_point = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      code_point = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= text.size()) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const unsigned char next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (code_point < kMin[extra] || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

// Levenshtein distance, for "did you mean".
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// "maxRestarts", "max-restarts", "Max_Restarts" -> "maxrestarts".
std::string Squash(absl::string_view text) {
  std::string out;
  for (char c : text) {
    if (c != '_' && c != '-') out.push_back(absl::ascii_tolower(c));
  }
  return out;
}

// The candidate `word` most likely meant, or "" when none is close.
std::string ClosestMatch(absl::string_view word,
                         const std::vector<std::string>& candidates) {
  if (word.size() > 100) return "";
  const std::string squashed = Squash(word);
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const std::string& candidate : candidates) {
    if (Squash(candidate) == squashed) return candidate;
    const size_t distance =
        EditDistance(absl::AsciiStrToLower(word), candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  const size_t allowed =
      std::max<size_t>(1, std::min(word.size(), best.size()) / 3);
  return best_distance <= allowed ? best : "";
}

std::vector<std::string> FieldNames(const Descriptor* descriptor) {
  std::vector<std::string> names;
  for (int i = 0; i < descriptor->field_count(); ++i) {
    names.push_back(descriptor->field(i)->name());
  }
  return names;
}

// Where else in the schema a key called `name` lives, e.g.
// "plugins[].backoff" for "initial"; "" if nowhere.
std::string FindKeyElsewhere(const Descriptor* descriptor,
                             absl::string_view name, const std::string& path,
                             int depth) {
  if (depth > 4) return "";
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    const std::string child =
        absl::StrCat(ChildPath(path, field->name()),
                     field->is_repeated() && !field->is_map() ? "[]" : "");
    if (field->name() == name) return path.empty() ? "the top level" : path;
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
        !field->is_map() && !IsDuration(field->message_type())) {
      std::string found =
          FindKeyElsewhere(field->message_type(), name, child, depth + 1);
      if (!found.empty()) return found;
    }
  }
  return "";
}

// "RestartPolicy" -> "RESTART_POLICY_".
std::string EnumPrefix(const EnumDescriptor* descriptor) {
  std::string prefix;
  for (char c : descriptor->name()) {
    if (absl::ascii_isupper(c) && !prefix.empty()) prefix.push_back('_');
    prefix.push_back(absl::ascii_toupper(c));
  }
  prefix.push_back('_');
  return prefix;
}

// RESTART_POLICY_ON_FAILURE -> "on-failure".
std::string EnumSpelling(const EnumValueDescriptor* value) {
  absl::string_view name = value->name();
  const std::string prefix = EnumPrefix(value->type());
  if (absl::StartsWith(name, prefix) && name.size() > prefix.size()) {
    name.remove_prefix(prefix.size());
  }
  std::string spelling = absl::AsciiStrToLower(name);
  std::replace(spelling.begin(), spelling.end(), '_', '-');
  return spelling;
}

bool IsUnspecified(const EnumValueDescriptor* value) {
  return value->number() == 0 && absl::EndsWith(value->name(), "_UNSPECIFIED");
}

// Records where each YAML document starts; ignores everything else.
class DocumentStarts : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    starts.push_back(mark);
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  std::vector<YAML::Mark> starts;
};

// "strings", for "expected a list of strings".
std::string Plural(const FieldDescriptor* field) {
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return "strings";
    case FieldDescriptor::CPPTYPE_BOOL:
      return "booleans";
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
      return "integers";
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return "non-negative integers";
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT:
      return "numbers";
    case FieldDescriptor::CPPTYPE_ENUM:
      return "names";
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return IsDuration(field->message_type()) ? "durations" : "mappings";
  }
  return "values";
}

// Reads YAML into a message, driven by its descriptor, and checks it; see
// the file comment. One per parse.
class Loader {
 public:
  Loader(const std::string& filename, const std::string& base_dir)
      : filename_(filename), base_dir_(base_dir) {}

  absl::StatusOr<v1::BrokerConfig> Load(absl::string_view yaml);

 private:
  // "FILE:LINE:COL: PATH: what".
  absl::Status Error(Location location, absl::string_view path,
                     absl::string_view what) const;
  absl::Status ErrorAt(absl::string_view path, absl::string_view what) const {
    return Error(Find(path), path, what);
  }
  // Where `path` was written; unknown when it was not.
  Location Find(absl::string_view path) const;
  bool Written(absl::string_view path) const {
    return locations_.count(std::string(path)) > 0;
  }

  // Pass 1.
  absl::Status WalkMessage(const YAML::Node& node, Location location,
                           const std::string& path, Message* message,
                           int depth);
  absl::Status WalkField(const YAML::Node& value, Location location,
                         const std::string& path, const FieldDescriptor* field,
                         Message* message, int depth);
  absl::Status WalkMap(const YAML::Node& value, Location location,
                       const std::string& path, const FieldDescriptor* field,
                       Message* message, int depth);
  // One value of `field`: sets it, or adds it when `field` is repeated.
  absl::Status WalkValue(const YAML::Node& value, Location location,
                         const std::string& path, const FieldDescriptor* field,
                         Message* message, int depth);
  absl::Status SetScalar(const std::string& text, Location location,
                         const std::string& path, const FieldDescriptor* field,
                         Message* message);
  absl::Status SetDuration(const std::string& text, Location location,
                           const std::string& path, Message* duration);
  std::string Expected(const FieldDescriptor* field) const;

  // Pass 2 and 3.
  absl::Status Validate(v1::BrokerConfig* config);
  absl::Status ValidatePlugin(const std::string& path,
                              v1::PluginConfig* plugin);
  absl::Status ValidateAfterDefaults(const v1::BrokerConfig& config);
  std::string Resolve(const std::string& path) const;

  const std::string filename_;
  const std::string base_dir_;
  std::map<std::string, Location, std::less<>> locations_;
};

absl::Status Loader::Error(Location location, absl::string_view path,
                           absl::string_view what) const {
  std::string message = filename_;
  if (location.line > 0) {
    absl::StrAppend(&message, ":", location.line);
    if (location.column > 0) absl::StrAppend(&message, ":", location.column);
  }
  absl::StrAppend(&message, ": ");
  if (!path.empty()) absl::StrAppend(&message, path, ": ");
  absl::StrAppend(&message, what);
  return absl::InvalidArgumentError(message);
}

Location Loader::Find(absl::string_view path) const {
  auto it = locations_.find(path);
  return it == locations_.end() ? Location{} : it->second;
}

std::string Loader::Expected(const FieldDescriptor* field) const {
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return "a string";
    case FieldDescriptor::CPPTYPE_BOOL:
      return "true or false";
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
      return "an integer";
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return "a non-negative integer";
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT:
      return "a number";
    case FieldDescriptor::CPPTYPE_ENUM: {
      std::vector<std::string> spellings;
      const EnumDescriptor* type = field->enum_type();
      for (int i = 0; i < type->value_count(); ++i) {
        if (!IsUnspecified(type->value(i))) {
          spellings.push_back(EnumSpelling(type->value(i)));
        }
      }
      return absl::StrCat("one of ", absl::StrJoin(spellings, ", "));
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      if (IsDuration(field->message_type())) {
        return "a duration like 100ms, 5s, 1m30s or 2h";
      }
      return absl::StrCat(
          "a mapping with keys ",
          absl::StrJoin(FieldNames(field->message_type()), ", "));
  }
  return "a value";
}

absl::Status Loader::WalkMessage(const YAML::Node& node, Location location,
                                 const std::string& path, Message* message,
                                 int depth) {
  const Descriptor* descriptor = message->GetDescriptor();
  if (depth > kMaxDepth) {
    return Error(location, path, "nested too deeply (a YAML alias cycle?)");
  }
  if (!node.IsMap()) {
    return Error(location, path,
                 absl::StrCat("expected a mapping with keys ",
                              absl::StrJoin(FieldNames(descriptor), ", "),
                              ", got ", Describe(node)));
  }
  std::map<std::string, Location> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies: yaml-cpp's operator-> returns a proxy that dies with this
    // statement, so a reference to it->first would dangle (found by
    // fuzz/config_fuzzer.cc, kept in fuzz/regressions/config).
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    const Location key_location =
        LocationOf(key).line > 0 ? LocationOf(key) : location;
    if (!key.IsScalar()) {
      return Error(key_location, path,
                   absl::StrCat("keys must be plain words, got ", Describe(key),
                                " as a key"));
    }
    const std::string& name = key.Scalar();
    const auto [previous, inserted] = seen.emplace(name, key_location);
    if (!inserted) {
      return Error(
          key_location, path,
          absl::StrCat("duplicate key ", Quote(name),
                       " (first written at line ", previous->second.line,
                       "); keep only one of them"));
    }
    const FieldDescriptor* field = descriptor->FindFieldByName(name);
    if (field == nullptr) {
      const std::vector<std::string> allowed = FieldNames(descriptor);
      std::string what = absl::StrCat("unknown key ", Quote(name));
      const std::string suggestion = ClosestMatch(name, allowed);
      if (!suggestion.empty()) {
        absl::StrAppend(&what, "; did you mean \"", suggestion, "\"?");
      } else if (name == "<<") {
        absl::StrAppend(&what, "; YAML merge keys are not supported");
      } else {
        const Descriptor* root = v1::BrokerConfig::descriptor();
        const std::string elsewhere = FindKeyElsewhere(root, name, "", 0);
        if (!elsewhere.empty()) {
          absl::StrAppend(&what, "; it is a key of ", elsewhere,
                          ": check the indentation");
        }
      }
      absl::StrAppend(&what, " (allowed ",
                      path.empty() ? "at the top level" : "here", ": ",
                      absl::StrJoin(allowed, ", "), ")");
      return Error(key_location, path, what);
    }
    const std::string child = ChildPath(path, name);
    const Location value_location = ValueLocation(value, key_location);
    locations_[child] = value_location;
    // "key:" with no value is the same as leaving the key out.
    if (value.IsNull()) continue;
    PLUGD_RETURN_IF_ERROR(
        WalkField(value, value_location, child, field, message, depth));
  }
  return absl::OkStatus();
}

absl::Status Loader::WalkField(const YAML::Node& value, Location location,
                               const std::string& path,
                               const FieldDescriptor* field, Message* message,
                               int depth) {
  if (field->is_map()) {
    return WalkMap(value, location, path, field, message, depth);
  }
  if (!field->is_repeated()) {
    return WalkValue(value, location, path, field, message, depth);
  }
  if (!value.IsSequence()) {
    std::string what = absl::StrCat("expected a list of ", Plural(field),
                                    ", got ", Describe(value));
    if (value.IsScalar()) {
      std::vector<absl::string_view> words = absl::StrSplit(
          value.Scalar(), absl::ByAnyChar(" \t"), absl::SkipEmpty());
      absl::StrAppend(&what, "; write it as a list: [",
                      absl::StrJoin(words, ", "), "]");
    }
    return Error(location, path, what);
  }
  size_t index = 0;
  for (auto it = value.begin(); it != value.end(); ++it, ++index) {
    const YAML::Node& element = *it;
    const std::string element_path = IndexPath(path, index);
    const Location element_location = ValueLocation(element, location);
    locations_[element_path] = element_location;
    if (element.IsNull()) {
      return Error(element_location, element_path,
                   absl::StrCat("expected ", Expected(field),
                                ", got an empty list item"));
    }
    PLUGD_RETURN_IF_ERROR(WalkValue(element, element_location, element_path,
                                    field, message, depth));
  }
  return absl::OkStatus();
}

absl::Status Loader::WalkMap(const YAML::Node& value, Location location,
                             const std::string& path,
                             const FieldDescriptor* field, Message* message,
                             int depth) {
  const Descriptor* entry_type = field->message_type();
  const FieldDescriptor* key_field = entry_type->map_key();
  const FieldDescriptor* value_field = entry_type->map_value();
  if (!value.IsMap()) {
    return Error(location, path,
                 absl::StrCat("expected a mapping like {KEY: value}, got ",
                              Describe(value)));
  }
  std::map<std::string, Location> seen;
  for (auto it = value.begin(); it != value.end(); ++it) {
    const YAML::Node key = it->first;
    const YAML::Node item = it->second;
    const Location key_location =
        LocationOf(key).line > 0 ? LocationOf(key) : location;
    if (!key.IsScalar()) {
      return Error(key_location, path,
                   absl::StrCat("keys must be plain words, got ", Describe(key),
                                " as a key"));
    }
    const std::string& name = key.Scalar();
    const auto [previous, inserted] = seen.emplace(name, key_location);
    if (!inserted) {
      return Error(
          key_location, path,
          absl::StrCat("duplicate key ", Quote(name),
                       " (first written at line ", previous->second.line,
                       "); keep only one of them"));
    }
    const std::string item_path = ChildPath(path, name);
    const Location item_location = ValueLocation(item, key_location);
    locations_[item_path] = item_location;
    Message* entry = message->GetReflection()->AddMessage(message, field);
    PLUGD_RETURN_IF_ERROR(
        SetScalar(name, key_location, item_path, key_field, entry));
    if (item.IsNull()) {
      // "KEY:" with nothing after it: an empty string, or a default value.
      continue;
    }
    PLUGD_RETURN_IF_ERROR(WalkValue(item, item_location, item_path, value_field,
                                    entry, depth + 1));
  }
  return absl::OkStatus();
}

absl::Status Loader::WalkValue(const YAML::Node& value, Location location,
                               const std::string& path,
                               const FieldDescriptor* field, Message* message,
                               int depth) {
  const Reflection* reflection = message->GetReflection();
  if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    if (IsDuration(field->message_type())) {
      if (!value.IsScalar()) {
        return Error(location, path,
                     absl::StrCat("expected ", Expected(field), ", got ",
                                  Describe(value)));
      }
      Message* duration = field->is_repeated()
                              ? reflection->AddMessage(message, field)
                              : reflection->MutableMessage(message, field);
      return SetDuration(value.Scalar(), location, path, duration);
    }
    if (!value.IsMap()) {
      return Error(location, path,
                   absl::StrCat("expected ", Expected(field), ", got ",
                                Describe(value)));
    }
    Message* child = field->is_repeated()
                         ? reflection->AddMessage(message, field)
                         : reflection->MutableMessage(message, field);
    return WalkMessage(value, location, path, child, depth + 1);
  }
  if (!value.IsScalar()) {
    return Error(
        location, path,
        absl::StrCat("expected ", Expected(field), ", got ", Describe(value)));
  }
  return SetScalar(value.Scalar(), location, path, field, message);
}

// Parses an integer in [min, max]; "" on success, else what is wrong.
template <typename T>
std::string ParseInteger(const std::string& text, T* out) {
  const bool is_unsigned = !std::numeric_limits<T>::is_signed;
  const std::string expected =
      is_unsigned ? "a non-negative integer" : "an integer";
  absl::string_view digits = text;
  const bool negative = absl::ConsumePrefix(&digits, "-");
  if (!negative) absl::ConsumePrefix(&digits, "+");
  const bool well_formed =
      !digits.empty() && digits.size() <= 40 &&
      std::all_of(digits.begin(), digits.end(),
                  [](char c) { return absl::ascii_isdigit(c); });
  if (!well_formed || (is_unsigned && negative)) {
    return absl::StrCat("expected ", expected, ", got ", Quote(text));
  }
  if (!absl::SimpleAtoi(text, out)) {
    return absl::StrCat(text, " is out of range: expected ", expected, " from ",
                        std::numeric_limits<T>::min(), " to ",
                        std::numeric_limits<T>::max());
  }
  return "";
}

absl::Status Loader::SetScalar(const std::string& text, Location location,
                               const std::string& path,
                               const FieldDescriptor* field, Message* message) {
  const Reflection* reflection = message->GetReflection();
  const bool repeated = field->is_repeated();
  std::string problem;
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      if (field->type() == FieldDescriptor::TYPE_STRING && !IsValidUtf8(text)) {
        return Error(location, path,
                     "is not valid UTF-8; save the file as UTF-8");
      }
      repeated ? reflection->AddString(message, field, text)
               : reflection->SetString(message, field, text);
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_BOOL: {
      const std::string lower = absl::AsciiStrToLower(text);
      bool value;
      if (lower == "true" || lower == "yes" || lower == "on") {
        value = true;
      } else if (lower == "false" || lower == "no" || lower == "off") {
        value = false;
      } else {
        return Error(location, path,
                     absl::StrCat("expected true or false, got ", Quote(text)));
      }
      repeated ? reflection->AddBool(message, field, value)
               : reflection->SetBool(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t value = 0;
      problem = ParseInteger(text, &value);
      if (!problem.empty()) break;
      repeated ? reflection->AddInt32(message, field, value)
               : reflection->SetInt32(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t value = 0;
      problem = ParseInteger(text, &value);
      if (!problem.empty()) break;
      repeated ? reflection->AddInt64(message, field, value)
               : reflection->SetInt64(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t value = 0;
      problem = ParseInteger(text, &value);
      if (!problem.empty()) break;
      repeated ? reflection->AddUInt32(message, field, value)
               : reflection->SetUInt32(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t value = 0;
      problem = ParseInteger(text, &value);
      if (!problem.empty()) break;
      repeated ? reflection->AddUInt64(message, field, value)
               : reflection->SetUInt64(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double value = 0;
      if (!absl::SimpleAtod(text, &value) || !std::isfinite(value)) {
        return Error(location, path,
                     absl::StrCat("expected a number, got ", Quote(text)));
      }
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
        if (std::fabs(value) > std::numeric_limits<float>::max()) {
          return Error(location, path, absl::StrCat(text, " is out of range"));
        }
        repeated ? reflection->AddFloat(message, field, value)
                 : reflection->SetFloat(message, field, value);
      } else {
        repeated ? reflection->AddDouble(message, field, value)
                 : reflection->SetDouble(message, field, value);
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const EnumDescriptor* type = field->enum_type();
      std::string wanted = absl::AsciiStrToLower(text);
      std::replace(wanted.begin(), wanted.end(), '_', '-');
      std::vector<std::string> spellings;
      for (int i = 0; i < type->value_count(); ++i) {
        const EnumValueDescriptor* value = type->value(i);
        if (IsUnspecified(value)) continue;
        std::string full = absl::AsciiStrToLower(value->name());
        std::replace(full.begin(), full.end(), '_', '-');
        const std::string spelling = EnumSpelling(value);
        if (wanted == spelling || wanted == full) {
          repeated ? reflection->AddEnumValue(message, field, value->number())
                   : reflection->SetEnumValue(message, field, value->number());
          return absl::OkStatus();
        }
        spellings.push_back(spelling);
      }
      std::string what =
          absl::StrCat("expected ", Expected(field), ", got ", Quote(text));
      const std::string suggestion = ClosestMatch(text, spellings);
      if (!suggestion.empty()) {
        absl::StrAppend(&what, "; did you mean \"", suggestion, "\"?");
      }
      return Error(location, path, what);
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return Error(
          location, path,
          absl::StrCat("expected ", Expected(field), ", got ", Quote(text)));
  }
  return Error(location, path, problem);
}

absl::Status Loader::SetDuration(const std::string& text, Location location,
                                 const std::string& path, Message* duration) {
  double number;
  if (!text.empty() &&
      (absl::ascii_isdigit(text[0]) || text[0] == '.' || text[0] == '-' ||
       text[0] == '+') &&
      absl::SimpleAtod(text, &number) && std::isfinite(number)) {
    return Error(location, path,
                 absl::StrCat(Quote(text), " has no unit; add one, e.g. ", text,
                              "s (units: ns, us, ms, s, m, h)"));
  }
  absl::Duration value;
  if (!absl::ParseDuration(text, &value) || value == absl::InfiniteDuration() ||
      value == -absl::InfiniteDuration()) {
    return Error(location, path,
                 absl::StrCat("expected a duration like 100ms, 5s, 1m30s or "
                              "2h, got ",
                              Quote(text)));
  }
  if (value < absl::ZeroDuration()) {
    return Error(location, path,
                 absl::StrCat("must not be negative, got ", Quote(text)));
  }
  if (value > absl::Seconds(kMaxDurationSeconds)) {
    return Error(location, path,
                 absl::StrCat(Quote(text), " is out of range (at most ",
                              kMaxDurationSeconds / 3600, "h)"));
  }
  absl::Duration remainder;
  const int64_t seconds =
      absl::IDivDuration(value, absl::Seconds(1), &remainder);
  const int32_t nanos = static_cast<int32_t>(
      absl::IDivDuration(remainder, absl::Nanoseconds(1), &remainder));
  const Descriptor* descriptor = duration->GetDescriptor();
  const Reflection* reflection = duration->GetReflection();
  reflection->SetInt64(duration, descriptor->FindFieldByName("seconds"),
                       seconds);
  reflection->SetInt32(duration, descriptor->FindFieldByName("nanos"), nanos);
  return absl::OkStatus();
}

std::string FormatDuration(const google::protobuf::Duration& duration) {
  return absl::FormatDuration(absl::Seconds(duration.seconds()) +
                              absl::Nanoseconds(duration.nanos()));
}

bool IsZero(const google::protobuf::Duration& duration) {
  return duration.seconds() == 0 && duration.nanos() == 0;
}

// The filesystem path of a "unix:" address: "unix:/p" and "unix:///p" -> "/p".
std::string UnixPath(absl::string_view address) {
  absl::ConsumePrefix(&address, "unix:");
  if (absl::StartsWith(address, "//")) address.remove_prefix(2);
  return std::string(address);
}

std::string Loader::Resolve(const std::string& path) const {
  if (path.empty() || path[0] == '/' || base_dir_.empty()) return path;
  return (std::filesystem::path(base_dir_) / path).lexically_normal().string();
}

absl::Status Loader::Validate(v1::BrokerConfig* config) {
  if (!config->admin().empty()) {
    const std::string& admin = config->admin();
    if (!absl::StartsWith(admin, "unix:")) {
      return ErrorAt("admin",
                     absl::StrCat(Quote(admin),
                                  " is not a Unix socket address; write "
                                  "unix:/path/to/admin.sock (the admin API "
                                  "is served on Unix sockets only)"));
    }
    const std::string path = UnixPath(admin);
    if (path.empty()) {
      return ErrorAt(
          "admin", "the socket path is empty; write unix:/path/to/admin.sock");
    }
    if (path.size() > kMaxSocketPathBytes) {
      return ErrorAt("admin",
                     absl::StrCat("the socket path is ", path.size(),
                                  " bytes, over the ", kMaxSocketPathBytes,
                                  "-byte limit of Unix sockets; "
                                  "use a shorter path"));
    }
  }
  if (!config->log_level().empty()) {
    log::Level level;
    if (!log::ParseLevel(config->log_level(), &level)) {
      return ErrorAt("log_level",
                     absl::StrCat("expected one of debug, info, warn, error, "
                                  "got ",
                                  Quote(config->log_level())));
    }
  }
  if (Written("event_history") && config->event_history() == 0) {
    return ErrorAt("event_history",
                   "must be at least 1 (leave it out for the default, 1000)");
  }
  config->set_socket_dir(Resolve(config->socket_dir()));

  std::map<std::string, std::string> names;  // name -> path of its plugin
  for (int i = 0; i < config->plugins_size(); ++i) {
    const std::string path = IndexPath("plugins", i);
    v1::PluginConfig* plugin = config->mutable_plugins(i);
    PLUGD_RETURN_IF_ERROR(ValidatePlugin(path, plugin));
    const auto [previous, inserted] = names.emplace(plugin->name(), path);
    if (!inserted) {
      const Location first = Find(previous->second + ".name");
      return ErrorAt(
          path + ".name",
          absl::StrCat("duplicate plugin name ", Quote(plugin->name()),
                       ", already used by ", previous->second, " at line ",
                       first.line, "; plugin names must be unique"));
    }
  }
  return absl::OkStatus();
}

absl::Status Loader::ValidatePlugin(const std::string& path,
                                    v1::PluginConfig* plugin) {
  const std::string& name = plugin->name();
  if (name.empty()) {
    return ErrorAt(path,
                   "missing name; every plugin needs a unique name "
                   "(letters, digits, '-', '_', '.')");
  }
  const bool valid_chars = std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.';
  });
  if (!valid_chars || name.size() > kMaxPluginNameBytes || name == "." ||
      name == "..") {
    return ErrorAt(path + ".name",
                   absl::StrCat("invalid plugin name ", Quote(name),
                                "; use letters, digits, '-', '_' and '.', at "
                                "most ",
                                kMaxPluginNameBytes,
                                " characters (it becomes part of a socket "
                                "path)"));
  }

  const std::string command_path = path + ".command";
  if (plugin->command_size() == 0) {
    return ErrorAt(Written(command_path) ? command_path : path,
                   absl::StrCat("plugin ", Quote(name),
                                " has no command; add one, e.g. command: "
                                "[/usr/bin/plugd-",
                                name, ", --flag]"));
  }
  if (plugin->command(0).empty()) {
    return ErrorAt(command_path + "[0]",
                   "the executable is empty; give a path or a name to find "
                   "in PATH");
  }
  for (int j = 0; j < plugin->command_size(); ++j) {
    if (plugin->command(j).find('\0') != std::string::npos) {
      return ErrorAt(IndexPath(command_path, j),
                     "contains a NUL character, which cannot be passed to a "
                     "program");
    }
  }
  const std::string& executable = plugin->command(0);
  if (executable.find('/') != std::string::npos) {
    plugin->set_command(0, Resolve(executable));
  }
  plugin->set_working_dir(Resolve(plugin->working_dir()));

  for (const auto& [key, value] : plugin->env()) {
    const std::string key_path = absl::StrCat(path, ".env.", key);
    if (key.empty() || key.find('=') != std::string::npos ||
        key.find('\0') != std::string::npos) {
      return ErrorAt(
          key_path,
          absl::StrCat("invalid environment variable name ", Quote(key),
                       "; names must be non-empty, without '='"));
    }
    if (value.find('\0') != std::string::npos) {
      return ErrorAt(key_path, "the value contains a NUL character");
    }
  }

  const std::string backoff_path = path + ".backoff";
  if (Written(backoff_path + ".multiplier") &&
      !(plugin->backoff().multiplier() >= 1)) {
    return ErrorAt(
        backoff_path + ".multiplier",
        absl::StrCat("must be at least 1, got ", plugin->backoff().multiplier(),
                     " (1 keeps the delay constant, 2 doubles it)"));
  }
  for (int j = 0; j < plugin->protocol_versions_size(); ++j) {
    if (plugin->protocol_versions(j) == 0) {
      return ErrorAt(IndexPath(path + ".protocol_versions", j),
                     "protocol versions start at 1");
    }
  }
  const std::string max_message_path = path + ".max_message_bytes";
  if (Written(max_message_path) &&
      (plugin->max_message_bytes() <= 0 ||
       plugin->max_message_bytes() > std::numeric_limits<int32_t>::max())) {
    return ErrorAt(
        max_message_path,
        absl::StrCat(plugin->max_message_bytes(),
                     " is out of range: expected 1 to ",
                     std::numeric_limits<int32_t>::max(), " (gRPC's limit)"));
  }
  for (const char* key : {"log_buffer_bytes", "log_line_bytes"}) {
    const std::string key_path = absl::StrCat(path, ".", key);
    const FieldDescriptor* field =
        v1::PluginConfig::descriptor()->FindFieldByName(key);
    if (Written(key_path) &&
        plugin->GetReflection()->GetUInt64(*plugin, field) == 0) {
      return ErrorAt(key_path,
                     "must be at least 1 (leave it out for the "
                     "default)");
    }
  }
  if (plugin->has_go_plugin()) {
    const std::string go_path = path + ".go_plugin";
    const v1::GoPluginConfig& go = plugin->go_plugin();
    for (const char* key : {"magic_cookie_key", "magic_cookie_value"}) {
      const FieldDescriptor* field =
          v1::GoPluginConfig::descriptor()->FindFieldByName(key);
      if (go.GetReflection()->GetString(go, field).empty()) {
        return ErrorAt(
            Written(absl::StrCat(go_path, ".", key))
                ? absl::StrCat(go_path, ".", key)
                : go_path,
            absl::StrCat("missing ", key,
                         "; copy MagicCookieKey and MagicCookieValue from "
                         "the plugin's plugin.HandshakeConfig"));
      }
    }
    if (go.magic_cookie_key().find('=') != std::string::npos ||
        go.magic_cookie_key().find('\0') != std::string::npos) {
      return ErrorAt(go_path + ".magic_cookie_key",
                     absl::StrCat("invalid environment variable name ",
                                  Quote(go.magic_cookie_key()),
                                  "; names must not contain '='"));
    }
    if (go.magic_cookie_value().find('\0') != std::string::npos) {
      return ErrorAt(go_path + ".magic_cookie_value",
                     "the value contains a NUL character");
    }
    for (const char* key : {"min_port", "max_port"}) {
      const FieldDescriptor* field =
          v1::GoPluginConfig::descriptor()->FindFieldByName(key);
      const uint32_t port = go.GetReflection()->GetUInt32(go, field);
      if (port > 65535) {
        return ErrorAt(absl::StrCat(go_path, ".", key),
                       absl::StrCat(port, " is not a TCP port (0 to 65535)"));
      }
    }
  }
  if (!plugin->sha256().empty()) {
    absl::StatusOr<std::string> pin = ParseSha256Pin(plugin->sha256());
    if (!pin.ok()) return ErrorAt(path + ".sha256", pin.status().message());
  }
  if (plugin->has_limits()) {
    const std::string limits_path = path + ".limits";
    const v1::LimitsConfig& limits = plugin->limits();
    if (Written(limits_path + ".address_space")) {
      absl::StatusOr<uint64_t> bytes = ParseByteSize(limits.address_space());
      if (!bytes.ok()) {
        return ErrorAt(limits_path + ".address_space",
                       bytes.status().message());
      }
      if (*bytes == 0) {
        return ErrorAt(limits_path + ".address_space",
                       "must be more than 0 bytes (leave it out for no "
                       "limit)");
      }
    }
    for (const char* key : {"open_files", "cpu_seconds", "processes"}) {
      const std::string key_path = absl::StrCat(limits_path, ".", key);
      const FieldDescriptor* field =
          v1::LimitsConfig::descriptor()->FindFieldByName(key);
      if (Written(key_path) &&
          limits.GetReflection()->GetUInt64(limits, field) == 0) {
        return ErrorAt(key_path,
                       "must be at least 1 (leave it out for no "
                       "limit)");
      }
    }
  }
  if (!plugin->group().empty() && plugin->user().empty()) {
    return ErrorAt(path + ".group",
                   "group needs user: name the user the plugin runs as too");
  }
  if (!plugin->user().empty()) {
    const std::string user_path = path + ".user";
    if (::geteuid() != 0) {
      return ErrorAt(
          user_path,
          absl::StrCat("running a plugin as another user needs plugd to run "
                       "as root, but it runs as uid ",
                       ::geteuid(),
                       "; remove user/group or run plugd as root"));
    }
    absl::StatusOr<RunAs> ids = LookUpRunAs(plugin->user(), plugin->group());
    if (!ids.ok()) {
      const bool group_problem =
          !plugin->group().empty() &&
          absl::StrContains(ids.status().message(), "group");
      return ErrorAt(group_problem ? path + ".group" : user_path,
                     ids.status().message());
    }
  }
  // A zero here would make the broker give up at once or spin.
  for (const char* key : {"start_timeout", "restart_window", "health_interval",
                          "unhealthy_timeout", "liveness_timeout"}) {
    const std::string key_path = absl::StrCat(path, ".", key);
    const FieldDescriptor* field =
        v1::PluginConfig::descriptor()->FindFieldByName(key);
    const auto& duration = static_cast<const google::protobuf::Duration&>(
        plugin->GetReflection()->GetMessage(*plugin, field));
    if (plugin->GetReflection()->HasField(*plugin, field) && IsZero(duration)) {
      return ErrorAt(key_path,
                     "must be longer than 0s (leave it out for the "
                     "default)");
    }
  }
  return absl::OkStatus();
}

absl::Status Loader::ValidateAfterDefaults(const v1::BrokerConfig& config) {
  const std::string socket_dir = config.socket_dir();
  for (int i = 0; i < config.plugins_size(); ++i) {
    const v1::PluginConfig& plugin = config.plugins(i);
    const std::string path = IndexPath("plugins", i);
    const google::protobuf::Duration& initial = plugin.backoff().initial();
    const google::protobuf::Duration& max = plugin.backoff().max();
    if (initial.seconds() > max.seconds() ||
        (initial.seconds() == max.seconds() && initial.nanos() > max.nanos())) {
      const std::string backoff_path = path + ".backoff";
      const std::string where = Written(backoff_path + ".initial")
                                    ? backoff_path + ".initial"
                                    : backoff_path + ".max";
      return ErrorAt(
          where,
          absl::StrCat("the initial backoff (", FormatDuration(initial),
                       ") is longer than the max backoff (",
                       FormatDuration(max), "); raise max or lower initial"));
    }
    if (plugin.has_go_plugin()) {
      const v1::GoPluginConfig& go = plugin.go_plugin();
      if (go.min_port() > go.max_port()) {
        const std::string go_path = path + ".go_plugin";
        return ErrorAt(
            Written(go_path + ".min_port") ? go_path + ".min_port"
                                           : go_path + ".max_port",
            absl::StrCat("min_port (", go.min_port(), ") is above max_port (",
                         go.max_port(), "); raise max_port or lower min_port"));
      }
      // go-plugin names its socket <socket_dir>/plugin<up to 10 digits>.
      const size_t go_socket_bytes = socket_dir.size() + 17;
      if (go_socket_bytes > kMaxSocketPathBytes) {
        return ErrorAt(
            path + ".go_plugin",
            absl::StrCat("a go-plugin plugin creates its socket in socket_dir ",
                         socket_dir, ", a path of up to ", go_socket_bytes,
                         " bytes, over the ", kMaxSocketPathBytes,
                         "-byte limit of Unix sockets; use a shorter "
                         "socket_dir"));
      }
    }
    const size_t socket_bytes =
        socket_dir.size() + 1 + plugin.name().size() + std::strlen(".sock");
    if (socket_bytes > kMaxSocketPathBytes) {
      return ErrorAt(
          path + ".name",
          absl::StrCat("the plugin's socket path (", socket_dir, "/",
                       plugin.name(), ".sock) would be ", socket_bytes,
                       " bytes, over the ", kMaxSocketPathBytes,
                       "-byte limit of Unix sockets; use a shorter name or "
                       "socket_dir"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::BrokerConfig> Loader::Load(absl::string_view yaml) {
  const std::string text(yaml);
  YAML::Node root;
  std::vector<YAML::Mark> starts;
  try {
    // yaml-cpp 0.7's LoadAll loops forever, allocating, on some invalid
    // inputs (a stray ',': jbeder/yaml-cpp#1040, fixed upstream by #1319):
    // the parser then starts "documents" without moving on. Count documents
    // with a bounded loop, and take a start that does not move for a syntax
    // error.
    std::istringstream stream(text);
    YAML::Parser parser(stream);
    DocumentStarts handler;
    while (handler.starts.size() < 3 && parser.HandleNextDocument(handler)) {
    }
    starts = std::move(handler.starts);
    for (size_t i = 1; i < starts.size(); ++i) {
      if (starts[i].pos == starts[i - 1].pos) {
        return Error({starts[i].line + 1, starts[i].column + 1}, "",
                     "YAML syntax error: unexpected text (a stray ','?)");
      }
    }
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    Location location;
    if (!e.mark.is_null()) location = {e.mark.line + 1, e.mark.column + 1};
    return Error(location, "",
                 absl::StrCat("YAML syntax error: ", e.msg,
                              " (check the indentation and the brackets and "
                              "quotes on this line and the one before)"));
  }
  const std::string keys =
      absl::StrJoin(FieldNames(v1::BrokerConfig::descriptor()), ", ");
  if (starts.size() > 1) {
    return Error({starts[1].line + 1, starts[1].column + 1}, "",
                 "a config file holds one YAML document; remove the second "
                 "one (after '---')");
  }
  if (root.IsNull() || !root.IsDefined()) {
    return Error({1, 0}, "",
                 absl::StrCat("the config is empty; expected a mapping with "
                              "keys ",
                              keys));
  }
  if (!root.IsMap()) {
    return Error(LocationOf(root), "",
                 absl::StrCat("the top level must be a mapping with keys ",
                              keys, ", got ", Describe(root)));
  }
  v1::BrokerConfig config;
  PLUGD_RETURN_IF_ERROR(WalkMessage(root, LocationOf(root), "", &config, 0));
  PLUGD_RETURN_IF_ERROR(Validate(&config));
  ApplyDefaults(&config);
  for (v1::PluginConfig& plugin : *config.mutable_plugins()) {
    if (plugin.working_dir().empty()) plugin.set_working_dir(base_dir_);
  }
  PLUGD_RETURN_IF_ERROR(ValidateAfterDefaults(config));
  return config;
}

void SetDefaultDuration(google::protobuf::Duration* duration,
                        absl::Duration value, bool present) {
  if (present) return;
  duration->set_seconds(absl::IDivDuration(value, absl::Seconds(1), &value));
  duration->set_nanos(static_cast<int32_t>(value / absl::Nanoseconds(1)));
}

}  // namespace

std::string DefaultAdminAddress() {
  const char* runtime_dir = std::getenv("XDG_RUNTIME_DIR");
  if (runtime_dir != nullptr && runtime_dir[0] != '\0') {
    return absl::StrCat("unix:", runtime_dir, "/plugd/admin.sock");
  }
  return absl::StrCat("unix:/tmp/plugd-", getuid(), "/admin.sock");
}

void ApplyDefaults(v1::BrokerConfig* config) {
  if (config->admin().empty()) config->set_admin(DefaultAdminAddress());
  if (config->socket_dir().empty()) {
    std::string dir =
        std::filesystem::path(UnixPath(config->admin())).parent_path().string();
    config->set_socket_dir(dir.empty() ? "." : dir);
  }
  if (config->log_level().empty()) config->set_log_level("info");
  if (config->event_history() == 0) config->set_event_history(1000);
  for (v1::PluginConfig& plugin : *config->mutable_plugins()) {
    if (plugin.restart() == v1::RESTART_POLICY_UNSPECIFIED) {
      plugin.set_restart(v1::RESTART_POLICY_ALWAYS);
    }
    SetDefaultDuration(plugin.mutable_start_timeout(), absl::Seconds(10),
                       plugin.has_start_timeout());
    SetDefaultDuration(plugin.mutable_stop_timeout(), absl::Seconds(5),
                       plugin.has_stop_timeout());
    v1::BackoffConfig* backoff = plugin.mutable_backoff();
    SetDefaultDuration(backoff->mutable_initial(), absl::Milliseconds(100),
                       backoff->has_initial());
    SetDefaultDuration(backoff->mutable_max(), absl::Seconds(30),
                       backoff->has_max());
    if (backoff->multiplier() == 0) backoff->set_multiplier(2);
    if (!plugin.has_max_restarts()) plugin.set_max_restarts(5);
    SetDefaultDuration(plugin.mutable_restart_window(), absl::Seconds(60),
                       plugin.has_restart_window());
    SetDefaultDuration(plugin.mutable_health_interval(), absl::Seconds(1),
                       plugin.has_health_interval());
    SetDefaultDuration(plugin.mutable_unhealthy_timeout(), absl::Seconds(5),
                       plugin.has_unhealthy_timeout());
    SetDefaultDuration(plugin.mutable_liveness_timeout(), absl::Seconds(5),
                       plugin.has_liveness_timeout());
    if (plugin.protocol_versions_size() == 0) plugin.add_protocol_versions(1);
    if (plugin.max_message_bytes() == 0) {
      plugin.set_max_message_bytes(int64_t{64} << 20);
    }
    if (plugin.log_buffer_bytes() == 0) plugin.set_log_buffer_bytes(1 << 20);
    if (plugin.log_line_bytes() == 0) plugin.set_log_line_bytes(16384);
    if (!plugin.has_log_rate_bytes()) plugin.set_log_rate_bytes(262144);
    if (!plugin.has_autostart()) plugin.set_autostart(true);
    if (!plugin.has_inherit_environment())
      plugin.set_inherit_environment(false);
    if (plugin.has_go_plugin()) {
      v1::GoPluginConfig* go = plugin.mutable_go_plugin();
      if (go->min_port() == 0) go->set_min_port(kGoPluginDefaultMinPort);
      if (go->max_port() == 0) go->set_max_port(kGoPluginDefaultMaxPort);
    }
  }
}

absl::StatusOr<v1::BrokerConfig> ParseConfig(absl::string_view yaml,
                                             const std::string& filename,
                                             const std::string& base_dir) {
  // The boundary: nothing thrown below (yaml-cpp, std::filesystem,
  // allocation) escapes.
  try {
    return Loader(filename, base_dir).Load(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(filename, ": cannot read the YAML: ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(filename, ": cannot load the config: ", e.what()));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat(filename, ": cannot load the config"));
  }
}

absl::StatusOr<v1::BrokerConfig> LoadConfigFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    const std::string what = absl::StrCat(
        path, ": cannot open the config file: ", std::strerror(error));
    if (error == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat(what, "; check the path given to --config"));
    }
    if (error == EACCES) return absl::PermissionDeniedError(what);
    return absl::InvalidArgumentError(what);
  }
  std::string text;
  struct stat info;
  absl::Status status;
  if (fstat(fd, &info) != 0) {
    status = absl::InvalidArgumentError(absl::StrCat(
        path, ": cannot read the config file: ", std::strerror(errno)));
  } else if (S_ISDIR(info.st_mode)) {
    status = absl::InvalidArgumentError(
        absl::StrCat(path, ": is a directory, not a config file"));
  } else {
    char buffer[1 << 16];
    for (;;) {
      const ssize_t n = read(fd, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        status = absl::InvalidArgumentError(absl::StrCat(
            path, ": cannot read the config file: ", std::strerror(errno)));
        break;
      }
      if (n == 0) break;
      text.append(buffer, static_cast<size_t>(n));
      if (static_cast<int64_t>(text.size()) > kMaxFileBytes) {
        status = absl::InvalidArgumentError(
            absl::StrCat(path, ": larger than ", kMaxFileBytes >> 20,
                         " MiB; is this really a config file?"));
        break;
      }
    }
  }
  close(fd);
  PLUGD_RETURN_IF_ERROR(status);

  std::error_code error;
  std::filesystem::path absolute = std::filesystem::absolute(path, error);
  if (error) absolute = path;
  const std::string base_dir =
      absolute.lexically_normal().parent_path().string();
  return ParseConfig(text, path, base_dir);
}

}  // namespace plugd::broker
