package plugd

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	structpb "github.com/golang/protobuf/ptypes/struct"
)

// NumberValue returns a google.protobuf.Value holding a number.
func NumberValue(x float64) *structpb.Value {
	return &structpb.Value{Kind: &structpb.Value_NumberValue{NumberValue: x}}
}

// StringValue returns a Value holding a string.
func StringValue(s string) *structpb.Value {
	return &structpb.Value{Kind: &structpb.Value_StringValue{StringValue: s}}
}

// BoolValue returns a Value holding a bool.
func BoolValue(b bool) *structpb.Value {
	return &structpb.Value{Kind: &structpb.Value_BoolValue{BoolValue: b}}
}

// NullValue returns a null Value: the result of a function that returns
// nothing.
func NullValue() *structpb.Value {
	return &structpb.Value{Kind: &structpb.Value_NullValue{}}
}

// ListValue returns a Value holding a list of values.
func ListValue(values ...*structpb.Value) *structpb.Value {
	return &structpb.Value{Kind: &structpb.Value_ListValue{
		ListValue: &structpb.ListValue{Values: values}}}
}

// StructValue returns a Value holding a struct (a JSON object).
func StructValue(fields map[string]*structpb.Value) *structpb.Value {
	return &structpb.Value{Kind: &structpb.Value_StructValue{
		StructValue: &structpb.Struct{Fields: fields}}}
}

// A strict JSON number, as the C++ SDK accepts in a string argument.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// parseNumber reads a string argument as a number: a finite JSON number,
// surrounding ASCII white space allowed.
func parseNumber(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if !jsonNumber.MatchString(s) {
		return 0, false
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
		return 0, false
	}
	return x, true
}

// formatNumber prints whole numbers without a fraction and others in the
// shortest form that reads back the same.
func formatNumber(x float64) string {
	if !math.IsInf(x, 0) && !math.IsNaN(x) && x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return strconv.FormatInt(int64(x), 10)
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

func shorten(s string) string {
	const max = 60
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// DescribeValue names a value's kind and shows it, for error messages:
// `string "two"`, `number 2.5`, `bool true`, `list of 3`, `null`.
func DescribeValue(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return `string "` + shorten(k.StringValue) + `"`
	case *structpb.Value_NumberValue:
		return "number " + shorten(formatNumber(k.NumberValue))
	case *structpb.Value_BoolValue:
		return "bool " + strconv.FormatBool(k.BoolValue)
	case *structpb.Value_ListValue:
		return fmt.Sprintf("list of %d", len(k.ListValue.GetValues()))
	case *structpb.Value_StructValue:
		return fmt.Sprintf("struct of %d field(s)", len(k.StructValue.GetFields()))
	}
	return "null"
}
