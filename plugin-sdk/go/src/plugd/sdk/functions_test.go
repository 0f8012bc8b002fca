package plugd

import (
	"context"
	"math"
	"strings"
	"testing"

	structpb "github.com/golang/protobuf/ptypes/struct"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func nop(Args) (*structpb.Value, error) { return nil, nil }

func TestUsageAndArity(t *testing.T) {
	for _, tc := range []struct {
		params   []Param
		usage    string
		min, max int
	}{
		{nil, "f", 0, 0},
		{[]Param{Required("a", Number), Required("b", Number)}, "f A B", 2, 2},
		{[]Param{Optional("min", Number), Optional("max", Number)}, "f [MIN [MAX]]", 0, 2},
		{[]Param{Required("s", String), Variadic("x", Any, false)}, "f S [X...]", 1, -1},
		{[]Param{Variadic("x", Number, true)}, "f X...", 1, -1},
	} {
		f := Function{Name: "f", Params: tc.params, Impl: nop}
		min, max := Arity(f)
		if got := Usage(f); got != tc.usage || min != tc.min || max != tc.max {
			t.Errorf("%v: %q %d..%d, want %q %d..%d", tc.params, got, min, max, tc.usage, tc.min, tc.max)
		}
	}
}

func TestBadDefinitionsAreRefused(t *testing.T) {
	r := NewRegistry("p")
	for _, tc := range []struct {
		f    Function
		want string
	}{
		{Function{Impl: nop}, "a function needs a name"},
		{Function{Name: "a b", Impl: nop}, `function name "a b" contains white space`},
		{Function{Name: "f"}, "function f has no implementation"},
		{Function{Name: "f", Impl: nop, Params: []Param{Variadic("x", Any, false), Required("y", Any)}},
			"function f: variadic parameter x must be the last one"},
		{Function{Name: "f", Impl: nop, Params: []Param{Optional("x", Any), Required("y", Any)}},
			"function f: required parameter y comes after an optional one"},
	} {
		if err := r.Add(tc.f); err == nil || err.Error() != tc.want {
			t.Errorf("Add(%v): %v, want %q", tc.f.Name, err, tc.want)
		}
	}
	if err := r.Add(Function{Name: "f", Impl: nop}); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(Function{Name: "f", Impl: nop}); err == nil || err.Error() != "function f is defined twice" {
		t.Errorf("a second f: %v", err)
	}
}

func TestArityErrors(t *testing.T) {
	r := NewRegistry("p")
	r.Add(Function{Name: "random", Impl: nop, Params: []Param{Optional("min", Number), Optional("max", Number)}})
	r.Add(Function{Name: "one", Impl: nop, Params: []Param{Required("x", Any)}})
	r.Add(Function{Name: "mean", Impl: nop, Params: []Param{Variadic("x", Number, true)}})
	for _, tc := range []struct {
		name string
		n    int
		want string
	}{
		{"random", 3, "random: expected 0 to 2 arguments (random [MIN [MAX]]), got 3"},
		{"one", 0, "one: expected 1 argument (one X), got 0"},
		{"mean", 0, "mean: expected at least 1 argument (mean X...), got 0"},
	} {
		_, err := r.Call(context.Background(), tc.name, make([]*structpb.Value, tc.n))
		expectStatus(t, err, codes.InvalidArgument, tc.want)
	}
	_, err := NewRegistry("empty").Call(context.Background(), "x", nil)
	expectStatus(t, err, codes.NotFound, `no function "x" in plugin empty; it offers none`)
}

func TestArgsAccessors(t *testing.T) {
	params := []Param{Required("a", Number), Required("s", String), Variadic("x", Any, false)}
	args := NewArgs("f", params, NumberValue(2.5), StringValue("two"), BoolValue(true),
		StringValue(" 7 "), StringValue("1e400"), NumberValue(3), ListValue(NumberValue(1)),
		StringValue("false"), NullValue())
	check := func(what string, err error, want string) {
		t.Helper()
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
			return
		}
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != want {
			t.Errorf("%s: %v, want INVALID_ARGUMENT %q", what, err, want)
		}
	}
	if x, err := args.Number(0); x != 2.5 || err != nil {
		t.Errorf("Number(0): %v %v", x, err)
	}
	_, err := args.Number(1)
	check("Number(1)", err, `f: argument 2 (s) must be a number, got string "two"`)
	_, err = args.Int(0)
	check("Int(0)", err, "f: argument 1 (a) must be a whole number within 64-bit range, got number 2.5")
	_, err = args.Int(1)
	check("Int(1)", err, `f: argument 2 (s) must be a whole number, got string "two"`)
	if x, err := args.Int(3); x != 7 || err != nil {
		t.Errorf(`Int(" 7 "): %v %v`, x, err)
	}
	_, err = args.Number(4)
	check("Number(1e400)", err, `f: argument 5 (x) must be a number, got string "1e400"`)
	if s, err := args.String(1); s != "two" || err != nil {
		t.Errorf("String(1): %v %v", s, err)
	}
	_, err = args.String(0)
	check("String(0)", err, "f: argument 1 (a) must be a string, got number 2.5")
	if b, err := args.Bool(2); !b || err != nil {
		t.Errorf("Bool(2): %v %v", b, err)
	}
	if b, err := args.Bool(7); b || err != nil {
		t.Errorf(`Bool("false"): %v %v`, b, err)
	}
	_, err = args.Bool(6)
	check("Bool(list)", err, "f: argument 7 (x) must be true or false, got list of 1")
	_, err = args.String(8)
	check("String(null)", err, "f: argument 9 (x) must be a string, got null")
	_, err = args.Number(9)
	check("Number(9)", err, "f: argument 10 (x) is missing (got 9 arguments)")
	if x, err := args.NumberOr(9, 4); x != 4 || err != nil {
		t.Errorf("NumberOr past the end: %v %v", x, err)
	}
	if x, err := args.IntOr(5, 4); x != 3 || err != nil {
		t.Errorf("IntOr given: %v %v", x, err)
	}
	_, err = args.StringOr(0, "d")
	check("StringOr given, wrong", err, "f: argument 1 (a) must be a string, got number 2.5")
	if _, ok := args.Value(42).GetKind().(*structpb.Value_NullValue); !ok {
		t.Errorf("Value past the end: %v", args.Value(42))
	}
	if xs, err := NewArgs("g", nil, NumberValue(1), StringValue("2")).Numbers(0); err != nil || len(xs) != 2 || xs[1] != 2 {
		t.Errorf("Numbers: %v %v", xs, err)
	}
	_, err = NewArgs("g", nil, StringValue("a"), NumberValue(1)).Strings(0)
	check("Strings", err, "g: argument 2 must be a string, got number 1")
}

func TestDescribeValue(t *testing.T) {
	for _, tc := range []struct {
		v    *structpb.Value
		want string
	}{
		{NumberValue(3), "number 3"},
		{NumberValue(-2.5), "number -2.5"},
		{NumberValue(1e20), "number 1e+20"},
		{NumberValue(math.Inf(1)), "number +Inf"},
		{StringValue(strings.Repeat("a", 70)), `string "` + strings.Repeat("a", 60) + `..."`},
		{BoolValue(false), "bool false"},
		{StructValue(map[string]*structpb.Value{"k": NullValue()}), "struct of 1 field(s)"},
		{&structpb.Value{}, "null"},
	} {
		if got := DescribeValue(tc.v); got != tc.want {
			t.Errorf("DescribeValue(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		host string
		ours []uint32
		want uint32
		err  string
	}{
		{"", []uint32{1}, 1, ""},
		{"1,2", []uint32{1, 2}, 2, ""},
		{"2,1,2", []uint32{1}, 1, ""},
		{"3", []uint32{1, 2}, 0, "no protocol version in common: the host supports [3], the plugin supports [1,2]; upgrade whichever side is older"},
		{"1,,2", []uint32{1}, 0, `PLUGD_PROTOCOL_VERSIONS="1,,2" is malformed; expected e.g. 1 or 1,2`},
		{"-1", []uint32{1}, 0, `PLUGD_PROTOCOL_VERSIONS="-1" is malformed; expected e.g. 1 or 1,2`},
	} {
		got, err := negotiate(tc.host, tc.ours)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("negotiate(%q, %v): %v, want %q", tc.host, tc.ours, err, tc.err)
			}
		} else if err != nil || got != tc.want {
			t.Errorf("negotiate(%q, %v) = %d %v, want %d", tc.host, tc.ours, got, err, tc.want)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for text, want := range map[string]Level{"debug": LevelDebug, "INFO": LevelInfo, "Warning": LevelWarn,
		"warn": LevelWarn, "error": LevelError} {
		if got, ok := ParseLevel(text); !ok || got != want {
			t.Errorf("ParseLevel(%q) = %v %v", text, got, ok)
		}
	}
	if _, ok := ParseLevel("loud"); ok {
		t.Error("ParseLevel(loud) succeeded")
	}
}
