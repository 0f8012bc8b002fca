package plugd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	structpb "github.com/golang/protobuf/ptypes/struct"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	plugdv1 "plugd/v1"
)

// hangGuard bounds every wait in these tests; nothing waits for it to pass.
const hangGuard = 30 * time.Second

// testEnv is a launcher's environment: cookie, a fresh short socket path.
func testEnv(t *testing.T, extra map[string]string) map[string]string {
	t.Helper()
	dir, err := ioutil.TempDir("", "plugd-go")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	env := map[string]string{
		"PLUGD_MAGIC_COOKIE":      MagicCookie,
		"PLUGD_SOCKET":            filepath.Join(dir, "p.sock"),
		"PLUGD_PROTOCOL_VERSIONS": "1",
		"PLUGD_PLUGIN_NAME":       "test",
		"PLUGD_SHUTDOWN_GRACE_MS": "60000", // longer than the hang guard
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// running is a plugin served in-process by serve() on its own goroutine.
type running struct {
	t         *testing.T
	socket    string
	handshake string
	conn      *grpc.ClientConn
	exit      chan int
	stderr    *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func dial(t *testing.T, socket string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.Dial("passthrough:///"+socket, grpc.WithInsecure(),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// start serves p with env and waits for the handshake line.
func start(t *testing.T, p *Plugin, env map[string]string) *running {
	t.Helper()
	r := &running{t: t, socket: env["PLUGD_SOCKET"], exit: make(chan int, 1), stderr: &lockedBuffer{}}
	out, in := io.Pipe()
	go func() {
		code := p.serve(func(k string) string { return env[k] }, in, r.stderr)
		in.Close()
		r.exit <- code
	}()
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- line
		io.Copy(ioutil.Discard, out)
	}()
	select {
	case r.handshake = <-lines:
	case <-time.After(hangGuard):
		t.Fatal("no handshake")
	}
	if r.handshake == "" {
		t.Fatalf("serve ended before its handshake: %s", r.stderr.String())
	}
	r.conn = dial(t, r.socket)
	t.Cleanup(func() {
		p.Shutdown()
		r.wait()
	})
	return r
}

// wait returns serve's exit code (once; later calls return -1).
func (r *running) wait() int {
	select {
	case code := <-r.exit:
		return code
	case <-time.After(hangGuard):
		r.t.Fatal("serve did not return")
	}
	return -1
}

// waitExit is wait for a test that expects the exit.
func (r *running) waitExit() int {
	code := r.wait()
	r.exit <- -1 // for the cleanup's wait
	return code
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	return c
}

func echoPlugin() *Plugin {
	p := New("echo", "2.0.0")
	p.Func("echo", "", func(a Args) (*structpb.Value, error) { return ListValue(a.Values()...), nil },
		Variadic("x", Any, false))
	p.Func("div", "div A B: A divided by B", func(a Args) (*structpb.Value, error) {
		x, err := a.Number(0)
		if err != nil {
			return nil, err
		}
		y, err := a.Number(1)
		if err != nil {
			return nil, err
		}
		if y == 0 {
			return nil, fmt.Errorf("division by zero")
		}
		return NumberValue(x / y), nil
	}, Required("a", Number), Required("b", Number))
	p.Func("fail", "", func(a Args) (*structpb.Value, error) {
		return nil, status.Error(codes.FailedPrecondition, "not today")
	})
	p.Func("panic", "", func(a Args) (*structpb.Value, error) { panic("oops") })
	p.Func("nothing", "", func(a Args) (*structpb.Value, error) { return nil, nil })
	return p
}

func call(t *testing.T, conn *grpc.ClientConn, fn string, args ...*structpb.Value) (*structpb.Value, error) {
	resp, err := plugdv1.NewFunctionsClient(conn).Call(ctx(t),
		&plugdv1.CallRequest{Function: fn, Args: args})
	return resp.GetResult(), err
}

func expectStatus(t *testing.T, err error, code codes.Code, message string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || st.Message() != message {
		t.Errorf("got %v %q, want %v %q", st.Code(), st.Message(), code, message)
	}
}

func TestRunByHandExplainsAndReturns1(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := echoPlugin().serve(func(string) string { return "" }, &stdout, &stderr)
	if code != ExitError {
		t.Errorf("exit %d, want 1", code)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q, want nothing", stdout.String())
	}
	if !strings.Contains(stderr.String(), "This is a plugd plugin (echo 2.0.0); it is not meant to be run by hand") {
		t.Errorf("stderr %q", stderr.String())
	}
}

func TestStartErrorsReturn1WithTheReason(t *testing.T) {
	dup := New("dup", "1")
	dup.Func("f", "", func(Args) (*structpb.Value, error) { return nil, nil })
	dup.Func("f", "", func(Args) (*structpb.Value, error) { return nil, nil })
	hook := New("hook", "1").OnStart(func() error { return fmt.Errorf("the database is gone") })
	for _, tc := range []struct {
		name   string
		plugin *Plugin
		env    map[string]string
		want   string
	}{
		{"no common version", New("v", "1").SetProtocolVersions(3), map[string]string{"PLUGD_PROTOCOL_VERSIONS": "1,2"},
			"plugd plugin v: no protocol version in common: the host supports [1,2], the plugin supports [3]; upgrade whichever side is older"},
		{"malformed versions", New("v", "1"), map[string]string{"PLUGD_PROTOCOL_VERSIONS": "1,x"},
			`PLUGD_PROTOCOL_VERSIONS="1,x" is malformed`},
		{"relative socket", New("s", "1"), map[string]string{"PLUGD_SOCKET": "p.sock"},
			`PLUGD_SOCKET must be an absolute socket path; got "p.sock"`},
		{"bad size", New("m", "1"), map[string]string{"PLUGD_MAX_MESSAGE_BYTES": "lots"},
			`PLUGD_MAX_MESSAGE_BYTES="lots" is not a positive whole number`},
		{"bad grace", New("g", "1"), map[string]string{"PLUGD_SHUTDOWN_GRACE_MS": "-5"},
			`PLUGD_SHUTDOWN_GRACE_MS="-5" is not a positive whole number`},
		{"socket too long", New("l", "1"), map[string]string{"PLUGD_SOCKET": "/tmp/" + strings.Repeat("x", 120)},
			"cannot listen on unix:/tmp/xxx"},
		{"bad definition", dup, nil, "plugd plugin dup: function f is defined twice"},
		{"start hook", hook, nil, "plugd plugin hook: the database is gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := testEnv(t, tc.env)
			var stdout, stderr bytes.Buffer
			code := tc.plugin.serve(func(k string) string { return env[k] }, &stdout, &stderr)
			if code != ExitError || stdout.Len() != 0 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, stdout.String(),
					stderr.String(), tc.want)
			}
		})
	}
}

func TestNegotiatesTheHighestCommonVersion(t *testing.T) {
	p := New("v", "1").SetProtocolVersions(1, 2, 3, 5)
	r := start(t, p, testEnv(t, map[string]string{"PLUGD_PROTOCOL_VERSIONS": "2, 3,4"}))
	want := fmt.Sprintf("1|3|unix|%s|grpc\n", r.socket)
	if r.handshake != want {
		t.Errorf("handshake %q, want %q", r.handshake, want)
	}
	d, err := plugdv1.NewControlClient(r.conn).Describe(ctx(t), &plugdv1.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetProtocolVersion() != 3 || p.ProtocolVersion() != 3 {
		t.Errorf("protocol version %d/%d, want 3", d.GetProtocolVersion(), p.ProtocolVersion())
	}
}

func TestHandshakeDescribeHealthAndReflection(t *testing.T) {
	p := echoPlugin()
	env := testEnv(t, nil)
	delete(env, "PLUGD_PROTOCOL_VERSIONS") // means 1
	r := start(t, p, env)
	if want := "1|1|unix|" + r.socket + "|grpc\n"; r.handshake != want {
		t.Errorf("handshake %q, want %q", r.handshake, want)
	}
	if p.LaunchName() != "test" {
		t.Errorf("LaunchName %q", p.LaunchName())
	}
	d, err := plugdv1.NewControlClient(r.conn).Describe(ctx(t), &plugdv1.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetName() != "echo" || d.GetVersion() != "2.0.0" || d.GetProtocolVersion() != 1 ||
		d.GetCoreProtocolVersion() != 1 || d.GetPid() != int64(os.Getpid()) {
		t.Errorf("Describe: %v", d)
	}
	wantServices := []string{"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
		"plugd.v1.Control", "plugd.v1.Functions"}
	if fmt.Sprint(d.GetServices()) != fmt.Sprint(wantServices) {
		t.Errorf("services %v, want %v", d.GetServices(), wantServices)
	}
	if len(d.GetFunctions()) != 5 || d.GetFunctions()[0].GetName() != "div" {
		t.Errorf("functions %v", d.GetFunctions())
	}

	health := healthpb.NewHealthClient(r.conn)
	for _, name := range append([]string{"", "plugin"}, wantServices...) {
		resp, err := health.Check(ctx(t), &healthpb.HealthCheckRequest{Service: name})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q: %v %v", name, resp.GetStatus(), err)
		}
	}
	_, err = health.Check(ctx(t), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	expectStatus(t, err, codes.NotFound, `unknown service "no.such.Service"`)

	// Reflection lists the same services.
	stream, err := rpb.NewServerReflectionClient(r.conn).ServerReflectionInfo(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		listed = append(listed, s.GetName())
	}
	if fmt.Sprint(listed) != fmt.Sprint(wantServices) {
		t.Errorf("reflection lists %v, want %v", listed, wantServices)
	}
	stream.CloseSend()
}

func TestFunctionCallsAndTheirErrors(t *testing.T) {
	r := start(t, echoPlugin(), testEnv(t, nil))
	got, err := call(t, r.conn, "div", NumberValue(7), StringValue(" 2 "))
	if err != nil || got.GetNumberValue() != 3.5 {
		t.Errorf("div 7 \" 2 \": %v %v", got, err)
	}
	got, err = call(t, r.conn, "echo", StringValue("a"), BoolValue(true))
	if err != nil || len(got.GetListValue().GetValues()) != 2 {
		t.Errorf("echo: %v %v", got, err)
	}
	got, err = call(t, r.conn, "nothing")
	if _, ok := got.GetKind().(*structpb.Value_NullValue); err != nil || !ok {
		t.Errorf("nothing: %v %v, want a null value", got, err)
	}

	_, err = call(t, r.conn, "mod", NumberValue(1))
	expectStatus(t, err, codes.NotFound,
		`no function "mod" in plugin echo; it offers: div, echo, fail, nothing, panic`)
	_, err = call(t, r.conn, "div", NumberValue(1))
	expectStatus(t, err, codes.InvalidArgument, "div: expected 2 arguments (div A B), got 1")
	_, err = call(t, r.conn, "div", NumberValue(1), StringValue("two"))
	expectStatus(t, err, codes.InvalidArgument, `div: argument 2 (b) must be a number, got string "two"`)
	_, err = call(t, r.conn, "div", NumberValue(1), NumberValue(0))
	expectStatus(t, err, codes.InvalidArgument, "div: division by zero")
	_, err = call(t, r.conn, "fail")
	expectStatus(t, err, codes.FailedPrecondition, "not today")
	_, err = call(t, r.conn, "panic")
	expectStatus(t, err, codes.Internal, "panic: panicked: oops")

	list, err := plugdv1.NewFunctionsClient(r.conn).ListFunctions(ctx(t), &plugdv1.ListFunctionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	div := list.GetFunctions()[0]
	if div.GetName() != "div" || div.GetHelp() != "div A B: A divided by B" || div.GetMinArgs() != 2 ||
		div.GetMaxArgs() != 2 || div.GetParams()[1].GetName() != "b" ||
		div.GetParams()[1].GetKind() != plugdv1.ValueKind_VALUE_KIND_NUMBER {
		t.Errorf("div: %v", div)
	}
	echo := list.GetFunctions()[1]
	if echo.GetHelp() != "echo [X...]" || echo.GetMinArgs() != 0 || echo.GetMaxArgs() != -1 ||
		!echo.GetParams()[0].GetVariadic() {
		t.Errorf("echo: %v", echo)
	}
}

func TestNoFunctionsServiceWithoutFunctions(t *testing.T) {
	r := start(t, New("typed", "1"), testEnv(t, nil))
	d, err := plugdv1.NewControlClient(r.conn).Describe(ctx(t), &plugdv1.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range d.GetServices() {
		if s == "plugd.v1.Functions" {
			t.Errorf("services %v include plugd.v1.Functions", d.GetServices())
		}
	}
	_, err = call(t, r.conn, "x")
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Functions.Call: %v, want UNIMPLEMENTED", err)
	}
}

// A service of the author's, registered through RegisterServices: here the
// plugd.v1.Functions service itself, with a registry of its own.
func TestAuthorsServicesAreServedAndNamed(t *testing.T) {
	registry := NewRegistry("own")
	registry.Add(Function{Name: "one", Impl: func(Args) (*structpb.Value, error) { return NumberValue(1), nil }})
	p := New("own", "1").RegisterServices(func(s *grpc.Server) {
		plugdv1.RegisterFunctionsServer(s, functions{registry})
	})
	r := start(t, p, testEnv(t, nil))
	got, err := call(t, r.conn, "one")
	if err != nil || got.GetNumberValue() != 1 {
		t.Errorf("one: %v %v", got, err)
	}
	resp, err := healthpb.NewHealthClient(r.conn).Check(ctx(t),
		&healthpb.HealthCheckRequest{Service: "plugd.v1.Functions"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of the author's service: %v %v", resp, err)
	}
}

func TestControlShutdownEndsAnOpenWatchAndReturns0(t *testing.T) {
	p := echoPlugin()
	var hookSawShuttingDown bool
	p.OnShutdown(func() { hookSawShuttingDown = p.ShuttingDown() })
	r := start(t, p, testEnv(t, nil)) // grace 60 s: only the shutdown itself can end it in time
	watch, err := healthpb.NewHealthClient(r.conn).Watch(ctx(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := watch.Recv()
	if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch update: %v %v", first, err)
	}
	if _, err := plugdv1.NewControlClient(r.conn).Shutdown(ctx(t),
		&plugdv1.ShutdownRequest{Reason: "test"}); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// The stream reports NOT_SERVING (the last update may be lost with the
	// connection) and ends.
	for {
		update, err := watch.Recv()
		if err != nil {
			break
		}
		if update.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("Watch update %v, want NOT_SERVING", update.GetStatus())
		}
	}
	if code := r.waitExit(); code != ExitOK {
		t.Errorf("exit %d, want 0", code)
	}
	if !hookSawShuttingDown {
		t.Error("the OnShutdown hook did not run, or ShuttingDown was false in it")
	}
	select {
	case <-p.Done():
	default:
		t.Error("Done is not closed")
	}
	if _, err := os.Stat(r.socket); !os.IsNotExist(err) {
		t.Errorf("the socket file is still there: %v", err)
	}
}

func TestSetServingIsSeenByWatch(t *testing.T) {
	p := echoPlugin()
	r := start(t, p, testEnv(t, nil))
	watch, err := healthpb.NewHealthClient(r.conn).Watch(ctx(t), &healthpb.HealthCheckRequest{Service: "plugin"})
	if err != nil {
		t.Fatal(err)
	}
	want := []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_SERVING,
		healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_SERVING}
	for i, w := range want {
		update, err := watch.Recv()
		if err != nil || update.GetStatus() != w {
			t.Fatalf("update %d: %v %v, want %v", i, update, err, w)
		}
		switch i {
		case 0:
			p.SetServing(false)
		case 1:
			resp, err := healthpb.NewHealthClient(r.conn).Check(ctx(t), &healthpb.HealthCheckRequest{})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Errorf("Check while not serving: %v %v", resp, err)
			}
			p.SetServing(true)
		}
	}
}

func TestSigtermReturns0(t *testing.T) {
	r := start(t, echoPlugin(), testEnv(t, nil))
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := r.waitExit(); code != ExitOK {
		t.Errorf("exit %d, want 0", code)
	}
}

func TestCallsStillRunningAfterTheGraceAreCancelled(t *testing.T) {
	p := New("slow", "1")
	entered := make(chan struct{})
	p.Func("block", "", func(a Args) (*structpb.Value, error) {
		close(entered)
		<-a.Context().Done() // only the end of the grace period ends it
		return nil, a.Context().Err()
	})
	r := start(t, p, testEnv(t, map[string]string{"PLUGD_SHUTDOWN_GRACE_MS": "100"}))
	result := make(chan error, 1)
	go func() {
		_, err := call(t, r.conn, "block")
		result <- err
	}()
	select {
	case <-entered:
	case <-time.After(hangGuard):
		t.Fatal("the call did not start")
	}
	p.Shutdown()
	if code := r.waitExit(); code != ExitOK {
		t.Errorf("exit %d, want 0", code)
	}
	select {
	case err := <-result:
		if err == nil {
			t.Error("the blocked call succeeded")
		}
	case <-time.After(hangGuard):
		t.Fatal("the blocked call did not end")
	}
}

func TestMessagesOverTheLimitAreRefused(t *testing.T) {
	r := start(t, echoPlugin(), testEnv(t, map[string]string{"PLUGD_MAX_MESSAGE_BYTES": "1024"}))
	_, err := call(t, r.conn, "echo", StringValue(strings.Repeat("x", 4096)))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 4 KiB call: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := call(t, r.conn, "echo", StringValue("small")); err != nil {
		t.Errorf("a small call: %v", err)
	}
}

// The test binary runs again as a real plugin process when this variable is
// set (the subprocess tests below).
const asPluginEnv = "PLUGD_GO_SDK_TEST_AS_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(asPluginEnv) != "" {
		os.Exit(echoPlugin().Serve())
	}
	os.Exit(m.Run())
}

// process is the test binary started as a plugin with a launcher's
// environment; it is killed at the end of the test if still running.
type process struct {
	cmd       *exec.Cmd
	handshake string
	stderr    *lockedBuffer
	exited    chan error
}

func startProcess(t *testing.T, env map[string]string) *process {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), asPluginEnv+"=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr := &process{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = pr.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		reader := bufio.NewReader(stdout)
		line, _ := reader.ReadString('\n')
		lines <- line
		io.Copy(ioutil.Discard, reader)
		pr.exited <- cmd.Wait() // after stdout's EOF, as exec requires
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-pr.exited
	})
	select {
	case pr.handshake = <-lines:
	case <-time.After(hangGuard):
		t.Fatal("no handshake line")
	}
	return pr
}

// wait returns the exit code.
func (pr *process) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-pr.exited:
		pr.exited <- err // for the cleanup
		if err == nil {
			return 0
		}
		if exit, ok := err.(*exec.ExitError); ok {
			return exit.ExitCode()
		}
		t.Fatal(err)
	case <-time.After(hangGuard):
		t.Fatal("the plugin process did not exit")
	}
	return -1
}

func TestAsAProcess(t *testing.T) {
	t.Run("ControlShutdown", func(t *testing.T) {
		env := testEnv(t, nil)
		pr := startProcess(t, env)
		if want := "1|1|unix|" + env["PLUGD_SOCKET"] + "|grpc\n"; pr.handshake != want {
			t.Fatalf("handshake %q, want %q; stderr: %s", pr.handshake, want, pr.stderr.String())
		}
		conn := dial(t, env["PLUGD_SOCKET"])
		d, err := plugdv1.NewControlClient(conn).Describe(ctx(t), &plugdv1.DescribeRequest{})
		if err != nil || d.GetPid() != int64(pr.cmd.Process.Pid) {
			t.Errorf("Describe: %v %v, want pid %d", d, err, pr.cmd.Process.Pid)
		}
		if _, err := plugdv1.NewControlClient(conn).Shutdown(ctx(t),
			&plugdv1.ShutdownRequest{Reason: "test"}); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if code := pr.wait(t); code != 0 {
			t.Errorf("exit %d, want 0; stderr: %s", code, pr.stderr.String())
		}
		for _, line := range []string{
			"[INFO] echo 2.0.0 serving on " + env["PLUGD_SOCKET"] + "\n",
			"[INFO] shutdown requested (test)\n",
			"[INFO] echo stopped\n",
		} {
			if !strings.Contains(pr.stderr.String(), line) {
				t.Errorf("stderr %q lacks %q", pr.stderr.String(), line)
			}
		}
	})
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			pr := startProcess(t, testEnv(t, nil))
			if err := pr.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := pr.wait(t); code != 0 {
				t.Errorf("exit %d, want 0; stderr: %s", code, pr.stderr.String())
			}
		})
	}
	t.Run("ByHand", func(t *testing.T) {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), asPluginEnv+"=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
			t.Errorf("run by hand: %v, want exit code 1", err)
		}
		if stdout.Len() != 0 || !strings.Contains(stderr.String(), "not meant to be run by hand") {
			t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
		}
	})
}
