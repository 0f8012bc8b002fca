package plugd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	goplugin "goplugin"
	plugdv1 "plugd/v1"
)

// The launch environment (docs/protocol.md §1).
const (
	// MagicCookie is the value of PLUGD_MAGIC_COOKIE that every plugd
	// launcher sets; without it a plugin was run by hand.
	MagicCookie = "d5a1f0c2-plugd-plugin-7e3b94c6"
	// CoreProtocolVersion is the version of the launch protocol itself.
	CoreProtocolVersion = 1

	DefaultMaxMessageBytes = 64 << 20
	DefaultShutdownGrace   = 5 * time.Second
)

// Serve's return values, the plugin's exit codes.
const (
	ExitOK    = 0 // served, then shut down gracefully
	ExitError = 1 // could not start: run by hand, bad environment, no common version, ...
)

// Plugin is a plugd plugin: functions and gRPC services, served by Serve.
// Set it up (Func, RegisterServices, hooks) before calling Serve; the
// run-time methods (Shutdown, SetServing, ShuttingDown, Done) are safe from
// any goroutine.
type Plugin struct {
	name, version string
	versions      []uint32
	registry      *Registry
	defErrors     []error
	registrations []func(*grpc.Server)
	options       []grpc.ServerOption
	onStart       []func() error
	onShutdown    []func()
	goPlugin      *goPluginHandshake // set by GoPlugin
	goPluginMode  bool               // set by Serve before it serves

	served     int32 // Serve was called
	stopOnce   sync.Once
	stop       chan struct{} // closed by Shutdown
	done       chan struct{} // closed when the shutdown begins
	shutting   int32
	negotiated uint32
	launchName string

	mu       sync.Mutex
	health   *health  // set by Serve
	services []string // set by Serve
}

// New returns a plugin with a name (short, no spaces: "kv") and a version
// (free form, e.g. "1.0.0"). It supports application protocol version 1
// until SetProtocolVersions says otherwise.
func New(name, version string) *Plugin {
	return &Plugin{
		name: name, version: version, versions: []uint32{1},
		registry: NewRegistry(name),
		stop:     make(chan struct{}), done: make(chan struct{}),
	}
}

// Name is the plugin's own name, as given to New.
func (p *Plugin) Name() string { return p.name }

// SetProtocolVersions sets the application protocol versions the plugin
// supports; Serve picks the highest one the host offers too.
func (p *Plugin) SetProtocolVersions(versions ...uint32) *Plugin {
	p.versions = append([]uint32(nil), versions...)
	return p
}

// Func offers a function through plugd.v1.Functions:
//
//	p.Func("div", "div A B: A divided by B", div,
//		plugd.Required("a", plugd.Number), plugd.Required("b", plugd.Number))
//
// The registry checks the number of arguments before calling impl. An empty
// help is replaced by the usage line. A bad definition (duplicate name,
// required after optional, ...) makes Serve print it and return 1.
func (p *Plugin) Func(name, help string, impl FuncImpl, params ...Param) *Plugin {
	return p.AddFunction(Function{Name: name, Help: help, Params: params, Impl: impl})
}

// AddFunction is Func with a Function value.
func (p *Plugin) AddFunction(f Function) *Plugin {
	if err := p.registry.Add(f); err != nil {
		p.defErrors = append(p.defErrors, err)
	}
	return p
}

// RegisterServices adds the plugin's own gRPC services. register is called
// once, with the server, before the plugin listens:
//
//	p.RegisterServices(func(s *grpc.Server) { kvv1.RegisterKVServer(s, store) })
//
// Every service registered shows in Describe and in health.
func (p *Plugin) RegisterServices(register func(s *grpc.Server)) *Plugin {
	p.registrations = append(p.registrations, register)
	return p
}

// ServerOptions adds grpc.ServerOptions (interceptors, keepalive, ...) to
// the server. The message-size limits come from PLUGD_MAX_MESSAGE_BYTES;
// do not set them here.
func (p *Plugin) ServerOptions(options ...grpc.ServerOption) *Plugin {
	p.options = append(p.options, options...)
	return p
}

// OnStart runs fn after the environment is checked and before the plugin
// listens (load data, open a database). An error stops the plugin: Serve
// prints it on stderr and returns 1.
func (p *Plugin) OnStart(fn func() error) *Plugin {
	p.onStart = append(p.onStart, fn)
	return p
}

// OnShutdown runs fn once when the shutdown begins, after health turned
// NOT_SERVING and before the server stops.
func (p *Plugin) OnShutdown(fn func()) *Plugin {
	p.onShutdown = append(p.onShutdown, fn)
	return p
}

// Shutdown starts a graceful shutdown, as Control.Shutdown and SIGTERM do.
// It does not wait; Serve returns once the shutdown is over. Idempotent.
func (p *Plugin) Shutdown() { p.stopOnce.Do(func() { close(p.stop) }) }

// ShuttingDown tells whether the shutdown has begun; long calls and streams
// should end early then.
func (p *Plugin) ShuttingDown() bool { return atomic.LoadInt32(&p.shutting) != 0 }

// Done is closed when the shutdown begins: select on it in long calls.
func (p *Plugin) Done() <-chan struct{} { return p.done }

// SetServing sets the health of every served name: SERVING (true) or
// NOT_SERVING. A supervising broker restarts a plugin that stays
// NOT_SERVING too long. No effect before Serve or once shutting down.
func (p *Plugin) SetServing(serving bool) {
	if h := p.currentHealth(); h != nil {
		h.setServing(serving)
	}
}

func (p *Plugin) currentHealth() *health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}

// ProtocolVersion is the negotiated application protocol version (0 before
// Serve has negotiated it).
func (p *Plugin) ProtocolVersion() uint32 { return atomic.LoadUint32(&p.negotiated) }

// LaunchName is the name the host knows the plugin by (PLUGD_PLUGIN_NAME),
// or the plugin's own name when the host gave none. Set by Serve.
func (p *Plugin) LaunchName() string {
	if p.launchName != "" {
		return p.launchName
	}
	return p.name
}

// Serve runs the plugin until it is shut down and returns the exit code:
// ExitOK after a graceful stop, ExitError when the plugin cannot start
// (with the reason on stderr). Call it once, from main:
//
//	os.Exit(p.Serve())
func (p *Plugin) Serve() int {
	return p.serve(os.Getenv, os.Stdout, os.Stderr)
}

// launchEnv is what Serve reads from the environment.
type launchEnv struct {
	socket   string
	version  uint32
	maxBytes int
	grace    time.Duration
	name     string
	policy   peerPolicy // who may connect
}

func envInt(getenv func(string) string, name string, def int) (int, error) {
	text := getenv(name)
	if text == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(text, 10, 32)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q is not a positive whole number below 2^31", name, text)
	}
	return int(n), nil
}

func formatVersions(vs []uint32) string {
	sorted := append([]uint32(nil), vs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	parts := make([]string, len(sorted))
	for i, v := range sorted {
		parts[i] = strconv.FormatUint(uint64(v), 10)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// negotiate picks the highest version in both the host's list (text, from
// PLUGD_PROTOCOL_VERSIONS; empty means "1") and ours.
func negotiate(text string, ours []uint32) (uint32, error) {
	if text == "" {
		text = "1"
	}
	var host []uint32
	seen := map[uint32]bool{}
	for _, part := range strings.Split(text, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(part), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("PLUGD_PROTOCOL_VERSIONS=%q is malformed; expected e.g. 1 or 1,2", text)
		}
		if !seen[uint32(v)] {
			seen[uint32(v)] = true
			host = append(host, uint32(v))
		}
	}
	var best uint32
	found := false
	for _, v := range ours {
		if seen[v] && (!found || v > best) {
			best, found = v, true
		}
	}
	if !found {
		return 0, fmt.Errorf("no protocol version in common: the host supports %s, the plugin "+
			"supports %s; upgrade whichever side is older", formatVersions(host), formatVersions(ours))
	}
	return best, nil
}

func (p *Plugin) readEnv(getenv func(string) string) (launchEnv, error) {
	var env launchEnv
	var err error
	if p.goPluginMode {
		env.version, err = negotiateGoPlugin(getenv("PLUGIN_PROTOCOL_VERSIONS"), p.versions)
	} else {
		env.version, err = negotiate(getenv("PLUGD_PROTOCOL_VERSIONS"), p.versions)
	}
	if err != nil {
		return env, err
	}
	env.socket = getenv("PLUGD_SOCKET")
	if env.socket == "" && p.goPluginMode {
		// A go-plugin host names no address: pick one, as go-plugin does.
		if env.socket, err = pickSocket(getenv); err != nil {
			return env, err
		}
	}
	if !strings.HasPrefix(env.socket, "/") {
		return env, fmt.Errorf("PLUGD_SOCKET must be an absolute socket path; got %q", env.socket)
	}
	if env.maxBytes, err = envInt(getenv, "PLUGD_MAX_MESSAGE_BYTES", DefaultMaxMessageBytes); err != nil {
		return env, err
	}
	graceMs, err := envInt(getenv, "PLUGD_SHUTDOWN_GRACE_MS", int(DefaultShutdownGrace/time.Millisecond))
	if err != nil {
		return env, err
	}
	env.grace = time.Duration(graceMs) * time.Millisecond
	env.name = getenv("PLUGD_PLUGIN_NAME")
	if env.policy, err = connectPolicy(p.name, getenv("PLUGD_LAUNCHER_UID")); err != nil {
		return env, err
	}
	return env, nil
}

func (p *Plugin) serve(getenv func(string) string, stdout, stderr io.Writer) int {
	plugdMode := getenv("PLUGD_MAGIC_COOKIE") == MagicCookie
	p.goPluginMode = !plugdMode && p.goPlugin != nil && getenv(p.goPlugin.key) == p.goPlugin.value
	if !plugdMode && !p.goPluginMode {
		fmt.Fprint(stderr, p.refusal(getenv))
		return ExitError
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "plugd plugin %s: %v\n", p.name, err)
		return ExitError
	}
	if !atomic.CompareAndSwapInt32(&p.served, 0, 1) {
		return fail(errors.New("Serve was called twice"))
	}
	// From here on SIGTERM and SIGINT mean "shut down", even during start.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	routeGrpcLogs()

	if len(p.defErrors) > 0 {
		return fail(p.defErrors[0])
	}
	env, err := p.readEnv(getenv)
	if err != nil {
		return fail(err)
	}
	atomic.StoreUint32(&p.negotiated, env.version)
	p.launchName = env.name
	for _, hook := range p.onStart {
		if err := hook(); err != nil {
			return fail(err)
		}
	}

	server := grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(env.maxBytes), grpc.MaxSendMsgSize(env.maxBytes),
	}, p.options...)...)
	h := p.register(server)

	if err := os.Remove(env.socket); err != nil && !os.IsNotExist(err) {
		return fail(fmt.Errorf("cannot remove the stale socket %s: %v", env.socket, err))
	}
	// Only the plugin's own uid, root and the launcher's may connect
	// (peercred.go, docs/security.md).
	listener, err := listenChecked(env.socket, env.policy)
	if err != nil {
		return fail(fmt.Errorf("cannot listen on unix:%s: %v", env.socket, err))
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(listener) }()

	// Listening: announce it. os.Stdout is unbuffered.
	if _, err := fmt.Fprintf(stdout, "%d|%d|unix|%s|grpc\n", CoreProtocolVersion, env.version,
		env.socket); err != nil {
		server.Stop()
		return fail(fmt.Errorf("cannot write the handshake to stdout: %v", err))
	}
	mode := ""
	if p.goPluginMode {
		mode = " (go-plugin mode)"
	}
	Infof("%s %s serving on %s%s", p.name, p.version, env.socket, mode)

	code := ExitOK
	select {
	case <-p.stop:
	case sig := <-signals:
		Infof("%v: shutting down", sig)
	case err := <-serveErr:
		Errorf("the gRPC server stopped on its own: %v", err)
		code = ExitError
	}
	p.stopServing(server, h, env, signals)
	if err := os.Remove(env.socket); err != nil && !os.IsNotExist(err) {
		Warnf("cannot remove the socket %s: %v", env.socket, err)
	}
	Infof("%s stopped", p.name)
	return code
}

// register adds every service to server and returns the health service.
func (p *Plugin) register(server *grpc.Server) *health {
	plugdv1.RegisterControlServer(server, control{p})
	if p.registry.Len() > 0 {
		plugdv1.RegisterFunctionsServer(server, functions{p.registry})
	}
	for _, register := range p.registrations {
		register(server)
	}
	if p.goPluginMode {
		goplugin.RegisterGRPCControllerServer(server, goPluginController{p})
		goplugin.RegisterGRPCBrokerServer(server, goPluginBroker{p})
	}
	reflection.Register(server)
	// Health last, knowing every name (itself included).
	var names []string
	for name := range server.GetServiceInfo() {
		names = append(names, name)
	}
	names = append(names, "grpc.health.v1.Health")
	sort.Strings(names)
	h := newHealth(append([]string{"", "plugin"}, names...))
	healthpb.RegisterHealthServer(server, h)

	p.mu.Lock()
	p.health = h
	p.services = names
	p.mu.Unlock()
	return h
}

// stopServing: NOT_SERVING and Watch streams end, hooks, then the server
// stops gracefully; calls still running after the grace period (or a second
// signal) are cancelled.
func (p *Plugin) stopServing(server *grpc.Server, h *health, env launchEnv, signals <-chan os.Signal) {
	atomic.StoreInt32(&p.shutting, 1)
	close(p.done)
	p.Shutdown()
	h.close()
	for _, hook := range p.onShutdown {
		hook()
	}
	stopped := make(chan struct{})
	go func() {
		server.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(env.grace)
	defer timer.Stop()
	select {
	case <-stopped:
		return
	case <-timer.C:
		Warnf("calls still running after the %v shutdown grace period: cancelling them", env.grace)
	case sig := <-signals:
		Warnf("%v during the shutdown: cancelling the calls still running", sig)
	}
	server.Stop()
	<-stopped
}

// control serves plugd.v1.Control.
type control struct{ p *Plugin }

func (c control) Describe(ctx context.Context, req *plugdv1.DescribeRequest) (*plugdv1.DescribeResponse, error) {
	p := c.p
	p.mu.Lock()
	services := append([]string(nil), p.services...)
	p.mu.Unlock()
	return &plugdv1.DescribeResponse{
		Name: p.name, Version: p.version,
		ProtocolVersion:     p.ProtocolVersion(),
		CoreProtocolVersion: CoreProtocolVersion,
		Services:            services,
		Functions:           p.registry.List(),
		Pid:                 int64(os.Getpid()),
	}, nil
}

// Shutdown answers, then the shutdown runs: the server's graceful stop lets
// this call finish first.
func (c control) Shutdown(ctx context.Context, req *plugdv1.ShutdownRequest) (*plugdv1.ShutdownResponse, error) {
	if req.GetReason() != "" {
		Infof("shutdown requested (%s)", req.GetReason())
	} else {
		Infof("shutdown requested")
	}
	c.p.Shutdown()
	return &plugdv1.ShutdownResponse{}, nil
}

// functions serves plugd.v1.Functions.
type functions struct{ r *Registry }

func (f functions) ListFunctions(ctx context.Context, req *plugdv1.ListFunctionsRequest) (*plugdv1.ListFunctionsResponse, error) {
	return &plugdv1.ListFunctionsResponse{Functions: f.r.List()}, nil
}

func (f functions) Call(ctx context.Context, req *plugdv1.CallRequest) (*plugdv1.CallResponse, error) {
	result, err := f.r.Call(ctx, req.GetFunction(), req.GetArgs())
	if err != nil {
		return nil, err
	}
	return &plugdv1.CallResponse{Result: result}, nil
}
