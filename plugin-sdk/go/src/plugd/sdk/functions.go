package plugd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"unicode"

	structpb "github.com/golang/protobuf/ptypes/struct"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	plugdv1 "plugd/v1"
)

// Kind is the kind of google.protobuf.Value a parameter expects; it is shown
// to hosts in ListFunctions (plugd.v1.ValueKind).
type Kind int32

// The parameter kinds.
const (
	Any    Kind = Kind(plugdv1.ValueKind_VALUE_KIND_UNSPECIFIED)
	Number Kind = Kind(plugdv1.ValueKind_VALUE_KIND_NUMBER)
	String Kind = Kind(plugdv1.ValueKind_VALUE_KIND_STRING)
	Bool   Kind = Kind(plugdv1.ValueKind_VALUE_KIND_BOOL)
	List   Kind = Kind(plugdv1.ValueKind_VALUE_KIND_LIST)
	Struct Kind = Kind(plugdv1.ValueKind_VALUE_KIND_STRUCT)
)

// Param describes one parameter of a function. Build it with Required,
// Optional or Variadic.
type Param struct {
	Name     string // short, for help and error messages: "min"
	Kind     Kind   // what ListFunctions shows; Args' accessors do the checking
	Help     string // one line
	Optional bool   // may be left out
	Variadic bool   // the last parameter, taking any number of arguments
}

// Required is a parameter that must be given.
func Required(name string, kind Kind, help ...string) Param {
	return Param{Name: name, Kind: kind, Help: strings.Join(help, " ")}
}

// Optional is a parameter that may be left out; optional parameters come
// after the required ones.
func Optional(name string, kind Kind, help ...string) Param {
	return Param{Name: name, Kind: kind, Help: strings.Join(help, " "), Optional: true}
}

// Variadic is a last parameter that takes zero or more arguments (one or
// more with atLeastOne).
func Variadic(name string, kind Kind, atLeastOne bool, help ...string) Param {
	return Param{Name: name, Kind: kind, Help: strings.Join(help, " "),
		Optional: !atLeastOne, Variadic: true}
}

// FuncImpl is a function's code. It returns the result, or an error:
//   - an error from Args' accessors, or one made with InvalidArgument, or
//     any error carrying a gRPC status (status.Error), reaches the caller
//     with its code and message unchanged;
//   - any other error is INVALID_ARGUMENT, its message prefixed with the
//     function's name ("div: division by zero");
//   - a panic is recovered and returned as INTERNAL.
//
// A nil result is a null Value. Functions run on gRPC's goroutines, several
// at a time: guard shared state.
type FuncImpl func(args Args) (*structpb.Value, error)

// Function is a function offered through plugd.v1.Functions.
type Function struct {
	Name   string  // non-empty, no white space
	Help   string  // for people; starts with the usage: "sub A B: A minus B"
	Params []Param // required, then optional, then at most one variadic
	Impl   FuncImpl
}

// InvalidArgument returns an INVALID_ARGUMENT error with a formatted message;
// return it from a function as is.
func InvalidArgument(format string, args ...interface{}) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// Args gives typed access to a call's arguments. Indexes count from 0,
// messages from 1. Every accessor fails with an INVALID_ARGUMENT error that
// names the function, the position, the parameter and the problem, e.g.
//
//	div: argument 2 (b) must be a number, got string "two"
//
// so returning the error is all the checking a function needs.
type Args struct {
	ctx      context.Context
	function string
	params   []Param
	values   []*structpb.Value
}

// NewArgs builds Args for a function's parameters, e.g. to test a FuncImpl
// without a server. Its Context is context.Background().
func NewArgs(function string, params []Param, values ...*structpb.Value) Args {
	return Args{function: function, params: params, values: values}
}

// Context is the call's context: done when the caller gives up, or when the
// shutdown grace period is over. Long functions should watch it.
func (a Args) Context() context.Context {
	if a.ctx == nil {
		return context.Background()
	}
	return a.ctx
}

// Len is the number of arguments given.
func (a Args) Len() int { return len(a.values) }

// Has tells whether argument i was given.
func (a Args) Has(i int) bool { return i >= 0 && i < len(a.values) }

// Value is argument i as it came, or a null Value when it was not given.
func (a Args) Value(i int) *structpb.Value {
	if !a.Has(i) {
		return NullValue()
	}
	return a.values[i]
}

// Values are the arguments as they came.
func (a Args) Values() []*structpb.Value { return a.values }

// describe is "fn: argument 3 (x)"; arguments past the parameters of a
// variadic function are named after the variadic parameter.
func (a Args) describe(i int) string {
	var param *Param
	if i < len(a.params) {
		param = &a.params[i]
	} else if n := len(a.params); n > 0 && a.params[n-1].Variadic {
		param = &a.params[n-1]
	}
	what := fmt.Sprintf("%s: argument %d", a.function, i+1)
	if param != nil && param.Name != "" {
		what += " (" + param.Name + ")"
	}
	return what
}

func (a Args) wrong(i int, expected string) error {
	return InvalidArgument("%s must be %s, got %s", a.describe(i), expected,
		DescribeValue(a.values[i]))
}

func (a Args) missing(i int) error {
	return InvalidArgument("%s is missing (got %s)", a.describe(i), plural(len(a.values)))
}

// Number is argument i as a number: a number, or a string that reads as one
// (calc passes "2" as a string).
func (a Args) Number(i int) (float64, error) {
	if !a.Has(i) {
		return 0, a.missing(i)
	}
	switch k := a.values[i].GetKind().(type) {
	case *structpb.Value_NumberValue:
		return k.NumberValue, nil
	case *structpb.Value_StringValue:
		if x, ok := parseNumber(k.StringValue); ok {
			return x, nil
		}
	}
	return 0, a.wrong(i, "a number")
}

// Int is argument i as a whole number within int64's range.
func (a Args) Int(i int) (int64, error) {
	x, err := a.Number(i)
	if err != nil {
		if !a.Has(i) {
			return 0, err
		}
		return 0, a.wrong(i, "a whole number")
	}
	// 2^63 is exactly representable; the range is [-2^63, 2^63).
	const limit = 9223372036854775808.0
	if x != math.Trunc(x) || x < -limit || x >= limit {
		return 0, a.wrong(i, "a whole number within 64-bit range")
	}
	return int64(x), nil
}

// String is argument i as a string.
func (a Args) String(i int) (string, error) {
	if !a.Has(i) {
		return "", a.missing(i)
	}
	if k, ok := a.values[i].GetKind().(*structpb.Value_StringValue); ok {
		return k.StringValue, nil
	}
	return "", a.wrong(i, "a string")
}

// Bool is argument i as a bool: a bool, or the string "true" or "false".
func (a Args) Bool(i int) (bool, error) {
	if !a.Has(i) {
		return false, a.missing(i)
	}
	switch k := a.values[i].GetKind().(type) {
	case *structpb.Value_BoolValue:
		return k.BoolValue, nil
	case *structpb.Value_StringValue:
		if k.StringValue == "true" || k.StringValue == "false" {
			return k.StringValue == "true", nil
		}
	}
	return false, a.wrong(i, "true or false")
}

// NumberOr is Number(i), or d when argument i was not given.
func (a Args) NumberOr(i int, d float64) (float64, error) {
	if !a.Has(i) {
		return d, nil
	}
	return a.Number(i)
}

// IntOr is Int(i), or d when argument i was not given.
func (a Args) IntOr(i int, d int64) (int64, error) {
	if !a.Has(i) {
		return d, nil
	}
	return a.Int(i)
}

// StringOr is String(i), or d when argument i was not given.
func (a Args) StringOr(i int, d string) (string, error) {
	if !a.Has(i) {
		return d, nil
	}
	return a.String(i)
}

// Numbers are the arguments from first on, as numbers.
func (a Args) Numbers(first int) ([]float64, error) {
	var out []float64
	for i := first; i < a.Len(); i++ {
		x, err := a.Number(i)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

// Strings are the arguments from first on, as strings.
func (a Args) Strings(first int) ([]string, error) {
	var out []string
	for i := first; i < a.Len(); i++ {
		s, err := a.String(i)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func plural(n int) string {
	if n == 1 {
		return "1 argument"
	}
	return fmt.Sprintf("%d arguments", n)
}

// Registry holds functions by name: what plugd.v1.Functions serves. A
// Plugin has one; it is exported for tests and reuse. Add is not safe to
// call concurrently with Call; Call and List are safe from any goroutine.
type Registry struct {
	plugin    string
	mu        sync.RWMutex
	functions map[string]Function
}

// NewRegistry returns an empty registry for the plugin named plugin (the
// name appears in NOT_FOUND messages).
func NewRegistry(plugin string) *Registry {
	return &Registry{plugin: plugin, functions: map[string]Function{}}
}

// Add checks a function's definition and adds it.
func (r *Registry) Add(f Function) error {
	if f.Name == "" {
		return errors.New("a function needs a name")
	}
	if strings.IndexFunc(f.Name, unicode.IsSpace) >= 0 {
		return fmt.Errorf("function name %q contains white space", f.Name)
	}
	if f.Impl == nil {
		return fmt.Errorf("function %s has no implementation", f.Name)
	}
	seenOptional := false
	for i, p := range f.Params {
		if p.Variadic && i != len(f.Params)-1 {
			return fmt.Errorf("function %s: variadic parameter %s must be the last one", f.Name, p.Name)
		}
		if !p.Optional && seenOptional {
			return fmt.Errorf("function %s: required parameter %s comes after an optional one", f.Name, p.Name)
		}
		seenOptional = seenOptional || p.Optional
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.functions[f.Name]; ok {
		return fmt.Errorf("function %s is defined twice", f.Name)
	}
	if f.Help == "" {
		f.Help = Usage(f)
	}
	r.functions[f.Name] = f
	return nil
}

// Len is the number of functions.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.functions)
}

func (r *Registry) names() []string {
	names := make([]string, 0, len(r.functions))
	for name := range r.functions {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Arity is the fewest and most arguments f accepts; most is -1 when f is
// variadic.
func Arity(f Function) (min, max int) {
	for _, p := range f.Params {
		if !p.Optional {
			min++
		}
	}
	if n := len(f.Params); n > 0 && f.Params[n-1].Variadic {
		return min, -1
	}
	return min, len(f.Params)
}

// Usage is the usage line derived from the parameters: "random [MIN [MAX]]",
// "add X...".
func Usage(f Function) string {
	var b strings.Builder
	b.WriteString(f.Name)
	open := 0
	for _, p := range f.Params {
		name := strings.ToUpper(p.Name)
		if p.Variadic {
			name += "..."
		}
		if p.Optional {
			b.WriteString(" [" + name)
			open++
		} else {
			b.WriteString(" " + name)
		}
	}
	b.WriteString(strings.Repeat("]", open))
	return b.String()
}

// List describes every function, sorted by name.
func (r *Registry) List() []*plugdv1.FunctionInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var infos []*plugdv1.FunctionInfo
	for _, name := range r.names() {
		f := r.functions[name]
		min, max := Arity(f)
		info := &plugdv1.FunctionInfo{Name: f.Name, Help: f.Help,
			MinArgs: uint32(min), MaxArgs: int32(max)}
		for _, p := range f.Params {
			info.Params = append(info.Params, &plugdv1.Parameter{
				Name: p.Name, Kind: plugdv1.ValueKind(p.Kind), Optional: p.Optional,
				Variadic: p.Variadic, Help: p.Help})
		}
		infos = append(infos, info)
	}
	return infos
}

// Call runs a function: its result, or an error with a gRPC status
// (NOT_FOUND for an unknown name, listing the names; INVALID_ARGUMENT for a
// wrong number of arguments; see FuncImpl for the function's own errors).
func (r *Registry) Call(ctx context.Context, name string, values []*structpb.Value) (*structpb.Value, error) {
	r.mu.RLock()
	f, ok := r.functions[name]
	var names []string
	if !ok {
		names = r.names()
	}
	r.mu.RUnlock()
	if !ok {
		offers := " none"
		if len(names) > 0 {
			offers = ": " + strings.Join(names, ", ")
		}
		return nil, status.Errorf(codes.NotFound, "no function %q in plugin %s; it offers%s",
			name, r.plugin, offers)
	}
	min, max := Arity(f)
	if n := len(values); n < min || (max >= 0 && n > max) {
		var expected string
		switch {
		case max < 0:
			expected = "at least " + plural(min)
		case min == max:
			expected = plural(min)
		default:
			expected = fmt.Sprintf("%d to %s", min, plural(max))
		}
		return nil, InvalidArgument("%s: expected %s (%s), got %d", f.Name, expected, Usage(f), n)
	}
	return run(f, Args{ctx: ctx, function: f.Name, params: f.Params, values: values})
}

func run(f Function, args Args) (result *structpb.Value, err error) {
	defer func() {
		if p := recover(); p != nil {
			Errorf("function %s panicked: %v", f.Name, p)
			result, err = nil, status.Errorf(codes.Internal, "%s: panicked: %v", f.Name, p)
		}
	}()
	result, err = f.Impl(args)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, InvalidArgument("%s: %v", f.Name, err)
	}
	if result == nil {
		result = NullValue()
	}
	return result, nil
}
